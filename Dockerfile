# Sunshare service image: a release build on Debian (first stage), run as an unprivileged user in a
# slim runtime image (second stage) that carries only the binary, the register maps, CA roots and
# curl (for the container health check, GET /healthz).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin sunshare

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /var/lib/sunshare --create-home sunshare
COPY --from=build /src/target/release/sunshare /usr/local/bin/sunshare
COPY --from=build /src/firmware-config /usr/share/sunshare/firmware-config
USER sunshare
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/sunshare"]
CMD ["serve", "--config", "/etc/sunshare/sunshare.toml"]
