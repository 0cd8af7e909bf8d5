"""CSV lead import: stream an upload into lead_import_lines with COPY, then let SQL validate and
merge it (lead_import_step) in background threads, one per lane.

Python only frames the bytes: it splits lines with a bounded buffer (a 10 MB line is skipped, not
held), decodes UTF-8 and splits CSV fields. Every rule about what a good lead is lives in SQL,
which reports each bad line with its number and reason.

Why a thread and not pgqueuer: the upload must be read by the web process that receives it, and
once staged the rest is a loop of short SQL steps that needs no worker process. A thread whose
process dies leaves the import 'validating'; the `lead-imports` job (run_lead_imports) resumes it.
"""
import csv
import io
import logging
import threading
import time
import weakref

from common.config import engine_settings

log = logging.getLogger(__name__)

MAX_LINE_BYTES = 64 * 1024
READ_BYTES = 1 << 20
PROGRESS_EVERY_SECONDS = 1.0
RECORD_SEPARATOR = "\x1f"   # U+001F, the unit separator: rare in CSV text (a record holding it goes as a list)


def _binary(stream):
    """A buffered binary reader, so readline runs in C whatever the upload object is."""
    if isinstance(stream, io.RawIOBase):
        return io.BufferedReader(stream, READ_BYTES)
    return stream


def framed_lines(stream, max_line=MAX_LINE_BYTES):
    """Yields (line_no, fields, defect, bytes_read) for each physical line. fields is the CSV record,
    or None with defect saying why the line could not be read. Memory stays bounded by max_line."""
    stream = _binary(stream)
    parser = _LineParser()
    line_no = 0
    bytes_read = 0
    while True:
        raw = stream.readline(max_line + 1)
        if not raw:
            return
        line_no += 1
        bytes_read += len(raw)
        if len(raw) > max_line and not raw.endswith(b"\n"):
            length = len(raw)
            while not raw.endswith(b"\n"):          # skip the rest of the over-long line
                raw = stream.readline(READ_BYTES)
                if not raw:
                    break
                length += len(raw)
                bytes_read += len(raw)
            yield line_no, None, f"line too long ({length} bytes; at most {max_line})", bytes_read
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield line_no, None, f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at position {exc.start + 1})", bytes_read
            continue
        if "\x00" in text:                              # PostgreSQL text cannot hold it
            yield line_no, None, "contains a NUL character", bytes_read
            continue
        try:
            fields = parser.fields(text.rstrip("\r\n"))
        except csv.Error as exc:
            yield line_no, None, f"not a CSV record ({exc})", bytes_read
            continue
        yield line_no, fields, None, bytes_read


class _LineParser:
    """The CSV fields of one line at a time, from one csv.reader (making one per line cost ~1 µs).
    The reader pulls from this object, which holds just the current line: a quoted field left open
    ends with its line, as with a reader of that line alone."""

    def __init__(self):
        self._line = None
        self._reader = csv.reader(self)

    def __iter__(self):
        return self

    def __next__(self):
        line, self._line = self._line, None
        if line is None:
            raise StopIteration
        return line

    def fields(self, text):
        if '"' not in text and "\r" not in text:   # what the reader returns for it, ~4x faster
            return text.split(",") if text else []
        self._line = text
        return next(self._reader, [])


def _record(fields):
    """(fields, None) or (None, the fields joined by RECORD_SEPARATOR) when that joins them
    unambiguously (SQL's _lead_import_fields splits it back): a text travels ~8x cheaper than a list."""
    if fields is None:
        return None, None
    record = RECORD_SEPARATOR.join(fields)
    if record and record.count(RECORD_SEPARATOR) == len(fields) - 1:
        return None, record
    return fields, None


def stage(conn, progress_conn, import_id, stream):
    """COPYs the upload into lead_import_lines and marks it uploaded. conn is used for the COPY;
    progress_conn reports progress meanwhile (it must be another connection). Returns lines staged."""
    lines = bytes_read = 0
    next_report = time.monotonic() + PROGRESS_EVERY_SECONDS
    with conn.cursor() as cur:
        # Binary COPY: values travel without quoting/escaping, ~4x faster than text format here.
        with cur.copy("COPY lead_import_lines (import_id, line_no, fields, record, defect) "
                      "FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["int8", "int4", "text[]", "text", "text"])
            for lines, fields, defect, bytes_read in framed_lines(stream):
                copy.write_row((import_id, lines, *_record(fields), defect))
                if time.monotonic() >= next_report:
                    progress_conn.execute("SELECT lead_import_uploaded(%s, %s, %s, false)",
                                          [import_id, bytes_read, lines])
                    next_report = time.monotonic() + PROGRESS_EVERY_SECONDS
    progress_conn.execute("SELECT lead_import_uploaded(%s, %s, %s, true)", [import_id, bytes_read, lines])
    return lines


def validate(conn, import_id):
    """Runs the SQL validation chunk by chunk (a commit each, so progress shows) until this
    connection finds no lane left to work on: alone, it works through every lane in turn."""
    while conn.execute("SELECT lead_import_step(%s) AS more", [import_id]).fetchone()["more"]:
        pass


_lane_slots: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()   # pool -> its lanes' semaphore
_lane_slots_lock = threading.Lock()


def lane_slots(pool) -> threading.BoundedSemaphore:
    """The lanes one pool serves at once, whatever the imports: a quarter of its connections (at
    least one), so several accounts importing together never take the connections requests need.
    A lane past them waits for a slot, holding no connection; its import's other lanes go on."""
    with _lane_slots_lock:
        slots = _lane_slots.get(pool)
        if slots is None:
            slots = _lane_slots[pool] = threading.BoundedSemaphore(max(1, pool.max_size // 4))
        return slots


def validate_in_background(pool, import_id):
    """Validates in the import's lanes side by side (setting lead_import_lanes), a pooled connection
    each while it holds one of the pool's lane slots; returns a thread that ends when every lane has."""
    with pool.connection() as conn:
        lanes = max(1, int(engine_settings(conn)["lead_import_lanes"]))
    slots = lane_slots(pool)

    def lane():
        try:
            with slots, pool.connection() as conn:
                validate(conn, import_id)
        except Exception as exc:  # leave a clear reason on the job instead of a silent thread death
            log.exception("lead import %s failed", import_id)
            with pool.connection() as conn:
                conn.execute("SELECT fail_lead_import(%s, %s)", [import_id, f"validation failed: {exc}"])

    def run():
        threads = [threading.Thread(target=lane, name=f"lead-import-{import_id}-{n}", daemon=True) for n in range(lanes)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    thread = threading.Thread(target=run, name=f"lead-import-{import_id}", daemon=True)
    thread.start()
    return thread
