"""The thin HTTP layer: Flask app factory and blueprints; logic lives in signer/ and archive/."""

from signer.http.app import create_app

__all__ = ["create_app"]
