#!/bin/sh
# core/ must stay free of FUSE, socket and OpenSSL headers, so the protocol
# logic runs in unit tests and simulations without them. Fails listing the
# offending lines.
dir=${1:?usage: check_core_includes.sh CORE_DIR}
bad=$(grep -nE '#\s*include\s*[<"](fuse|fuse3/|sys/socket\.h|netinet/|arpa/|openssl/|boost/asio)' "$dir"/*.h "$dir"/*.cc)
if [ -n "$bad" ]; then
  echo "core/ includes I/O-layer headers:"
  echo "$bad"
  exit 1
fi
echo "core/ is free of FUSE, socket and OpenSSL includes"
