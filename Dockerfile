# regsweep as a container image: a statically linked binary and CA certificates on scratch.
# The binary is built outside (no base image needs pulling):
#   RUSTFLAGS="-C target-feature=+crt-static" \
#     cargo build --release --target x86_64-unknown-linux-gnu --bin regsweep
#   mkdir -p target/image && cp target/x86_64-unknown-linux-gnu/release/regsweep \
#     /etc/ssl/certs/ca-certificates.crt target/image/
#   buildah bud --storage-driver vfs --isolation chroot -t regsweep -f Dockerfile target/image
# scripts/image.sh does all of it and checks the result (CI runs it).
FROM scratch
COPY regsweep /regsweep
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
# The original image's interface: configuration only through these variables
# (REGISTRY_URL, REGISTRY_DIR, REGISTRY_STORAGE=S3, ACCESS_KEY, SECRET_KEY, BUCKET, REGION,
# SELF_SIGNED_CERT, REGISTRY_AUTH, DRY_RUN, REPO_FILTER, HASH_TAG_PATTERN, HASH_TAG_KEEP),
# the registry's storage mounted at /registry (regsweep's default REGISTRY_DIR on a
# filesystem, so it is not set here: on S3 REGISTRY_DIR is the driver's rootdirectory, the
# bucket root when unset), and the cleanup as the entrypoint.
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
ENTRYPOINT ["/regsweep"]
