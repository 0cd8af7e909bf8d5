"""A plain HTTP server on 127.0.0.1 for fetcher and webhook tests: GETs and POSTs are answered by route handlers
(path without the query -> fn(request_handler)), and every path asked for is recorded."""
import contextlib
import http.server
import threading


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        self.server.paths.append(self.path)
        self.server.routes[self.path.split("?")[0]](self)

    do_POST = do_GET  # noqa: N815 - the route handler reads the body itself

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def local_http(routes):
    """Yields the server: .server_port, and .paths (what was requested, in order)."""
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    srv.paths, srv.routes = [], routes
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
