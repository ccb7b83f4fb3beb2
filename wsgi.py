"""The app for gunicorn: `gunicorn wsgi:app`."""

from identity import create_app

app = create_app()
