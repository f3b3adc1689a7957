"""gunicorn entry point: `gunicorn -c gunicorn.conf.py signer.http.wsgi:app`."""

from signer.http.app import create_app
from signer.service import Hocba

app = create_app()

# Resume unfinished batches (a worker that died left them behind): every worker runs a
# job runner thread.
hocba: Hocba = app.extensions["hocba"]
hocba.jobs().ensure_started()
