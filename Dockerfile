# Builds the `listbackup` binary and ships it on a slim Debian. Used by docker-compose.yml.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin listbackup

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /var/lib/listbackup --create-home listbackup
COPY --from=build /src/target/release/listbackup /usr/local/bin/listbackup
USER listbackup
EXPOSE 8080
ENTRYPOINT ["listbackup"]
CMD ["serve"]
