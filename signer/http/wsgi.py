"""gunicorn entry point: `gunicorn -c gunicorn.conf.py signer.http.wsgi:app`."""

from signer.http.app import create_app

app = create_app()

# Resume unfinished batches (a worker that died left them behind): every worker runs a
# job runner thread.
with app.app_context():
    from signer.http.jobs import runner

    runner().ensure_started()
