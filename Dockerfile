# Builds the `listbackup` binary and ships it on a slim Debian. Used by docker-compose.yml.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin listbackup

FROM debian:bookworm-slim
# The backups' volume mounts at /var/lib/listbackup/backups: Docker gives a new named volume the owner of the
# image's directory, so it must exist and belong to the service's user (a root-owned one refuses every backup).
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /var/lib/listbackup --create-home listbackup \
    && install -d -o listbackup -g listbackup /var/lib/listbackup/backups
COPY --from=build /src/target/release/listbackup /usr/local/bin/listbackup
USER listbackup
EXPOSE 8080
ENTRYPOINT ["listbackup"]
CMD ["serve"]
