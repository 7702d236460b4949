# dynavault in a container: a non-root user, the data dir and the root key on volumes.
#   docker build -t dynavault .
#   docker run -p 8000:8000 -v dynavault-data:/data -v dynavault-keys:/keys dynavault
# The root key (which seals every KMS key) lives on its own volume, apart from the data: a copy of the data
# volume alone cannot be decrypted. Back both up, separately.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY dynavault ./dynavault
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin dynavault \
 && mkdir -p /data /keys && chown dynavault:dynavault /data /keys && chmod 0700 /data /keys
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER dynavault
WORKDIR /data
VOLUME ["/data", "/keys"]
EXPOSE 8000
ENV DYNAVAULT_HOST=0.0.0.0 \
    DYNAVAULT_DATA_DIR=/data \
    DYNAVAULT_ROOT_KEY_FILE=/keys/root.key
STOPSIGNAL SIGTERM
ENTRYPOINT ["dynavault"]
CMD ["serve"]
