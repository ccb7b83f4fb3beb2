"""The app on a real HTTP server on loopback, in a thread, for tests of concurrency."""

import threading
from contextlib import contextmanager

from werkzeug.serving import make_server


@contextmanager
def serving(app):
    """The base URL of `app` served by a threaded server on 127.0.0.1."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    # shutdown() waits for the loop's next look at its flag: half a second by default.
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()
