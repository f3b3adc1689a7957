# Production image: gunicorn, non-root, no dev keys or dev state inside.
FROM python:3.11-slim-bookworm

RUN apt-get update \
 && apt-get install -y --no-install-recommends fonts-noto-core libsofthsm2 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY signer ./signer
COPY archive ./archive
COPY certs/__init__.py ./certs/__init__.py
COPY policies ./policies
COPY openapi.yaml gunicorn.conf.py ./
RUN pip install --no-cache-dir ".[postgres]" \
 && useradd --system --uid 10001 --home /app hocba

USER hocba
ENV HOCBA_ENV=production \
    HOCBA_POLICY_DIR=/app/policies \
    HOST=0.0.0.0 \
    PORT=8080
EXPOSE 8080
# Mount the clients file (api_key_sha256 entries), trust anchors, PKCS#11 module config;
# set HOCBA_CLIENTS_FILE, HOCBA_TSA_URL, HOCBA_PKCS11_MODULE, HOCBA_STORE, HOCBA_INDEX_URL
# and the PIN variable named by HOCBA_PKCS11_PIN_ENV.
CMD ["gunicorn", "-c", "/app/gunicorn.conf.py", "signer.http.wsgi:app"]
