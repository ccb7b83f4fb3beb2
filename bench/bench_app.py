"""The app for the benchmarks: the service as `wsgi.py` makes it, plus one baseline route.

`GET /bench/select1` borrows a connection from the same pool and runs `select 1`: what any
request costs in Flask, gunicorn and one database round trip, with none of the service's
own work. It is registered on the Flask app directly, so it is not in the OpenAPI document.
"""

from flask import jsonify

from identity import create_app
from identity.db import unit_of_work

app = create_app()


@app.get("/bench/select1")
def select1():
    unit_of_work().one_statement.execute("select 1").fetchone()
    return jsonify(ok=True)
