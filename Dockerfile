# Mascot credits backend: multi-stage build, small non-root runtime image.
# The build stage runs scripts/build-server-release, the same script the test suite runs.

FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN ./scripts/build-server-release /out

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates gosu \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /app --create-home mascot
COPY --from=build /out/mascot-server /usr/local/bin/mascot-server
COPY deploy/entrypoint.sh /usr/local/bin/entrypoint
WORKDIR /app
ENV PORT=8080 \
    LOG_FORMAT=json
EXPOSE 8080
# The entrypoint fixes the ownership of a mounted volume, then drops to the mascot user.
ENTRYPOINT ["/usr/local/bin/entrypoint"]
# serve applies pending migrations before it listens.
CMD ["mascot-server", "serve"]
