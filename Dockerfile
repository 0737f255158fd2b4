# mqttgate: multi-stage build, slim runtime, non-root.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN groupadd --system --gid 10001 mqttgate \
 && useradd --system --uid 10001 --gid 10001 --home-dir /app mqttgate
WORKDIR /app
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER 10001:10001
# Configuration and certificates are mounted, never baked in.
VOLUME ["/app/config", "/app/certs"]
EXPOSE 8883 8081
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8081/healthz', timeout=2).status == 200 else 1)"]
ENTRYPOINT ["mqttgate"]
CMD ["serve", "--config", "/app/config/gateway.toml"]
