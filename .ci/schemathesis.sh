#!/usr/bin/env bash
# Property-based checks of a running Sunshare's JSON API against its own OpenAPI document: no 5xx,
# and every answer has a documented status, content type and a body that fits the documented schema.
#
#   .ci/schemathesis.sh BASE_URL [extra `schemathesis run` arguments...]
#   .ci/schemathesis.sh http://127.0.0.1:8080 -H "Authorization: Bearer sst_..."
#
# Installs nothing: needs schemathesis 4 (python3 -m pip install schemathesis==4.32.5).
# SCHEMATHESIS_MAX_EXAMPLES sets the examples per operation (default 25).
set -euo pipefail

if [ $# -lt 1 ]; then
  echo "usage: $0 BASE_URL [schemathesis run arguments...]" >&2
  exit 2
fi
base="${1%/}"
shift

if ! command -v schemathesis >/dev/null; then
  echo "schemathesis is not installed: python3 -m pip install schemathesis==4.32.5" >&2
  exit 2
fi

exec schemathesis run "$base/api/openapi.json" \
  --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-25}" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --request-timeout 20 \
  --generation-database none \
  --no-color \
  "$@"
