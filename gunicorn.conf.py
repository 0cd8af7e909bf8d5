"""gunicorn settings read by the Procfile's web process (gunicorn loads ./gunicorn.conf.py itself).

On SIGTERM a gthread worker waits for its open requests up to graceful_timeout; websockets never
finish on their own, so a deploy or `make stop` would hang 30 s. The worker first tells /ws
to close every socket (browsers reconnect to the new process), then exits as usual."""
import signal


def post_worker_init(worker):
    from web.live import stop_all

    def stop(signum, frame, exit_=worker.handle_exit):
        stop_all()
        exit_(signum, frame)

    signal.signal(signal.SIGTERM, stop)
