"""OTLP/HTTP bodies: decoding exports and encoding the answers.

Both encodings are read with the official `opentelemetry-proto` messages:
`application/x-protobuf` with `ParseFromString`, `application/json` with
protobuf's own `json_format` (which takes the OTLP/JSON quirks: `intValue`
as a number or a string, enums as numbers, hex trace ids). A body may be
`Content-Encoding: gzip`; it is inflated up to a cap, so a small compressed
body cannot expand without bound.

https://opentelemetry.io/docs/specs/otlp/#otlphttp
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest, ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)

from ..errors import ApiError

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
SIGNALS = {
    "logs": (ExportLogsServiceRequest, ExportLogsServiceResponse, "rejected_log_records"),
    "metrics": (ExportMetricsServiceRequest, ExportMetricsServiceResponse, "rejected_data_points"),
}


@dataclass
class Export:
    signal: str  # "logs" or "metrics"
    encoding: str  # PROTOBUF or JSON: the answer is given in the same
    request: Message


def media_type(content_type: str | None) -> str:
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind in (PROTOBUF, "application/protobuf"):
        return PROTOBUF
    if kind == JSON:
        return JSON
    raise ApiError(415, "unsupported_media_type",
                   "OTLP/HTTP bodies are application/x-protobuf or application/json.",
                   [{"field": "Content-Type", "message": f"got {kind or 'nothing'}"}])


def inflate(body: bytes, content_encoding: str | None, limit: int) -> bytes:
    """The body as sent before compression (gzip or deflate), at most `limit` bytes."""
    encoding = (content_encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise ApiError(415, "unsupported_encoding", "Send OTLP bodies plain or with Content-Encoding: gzip.",
                       [{"field": "Content-Encoding", "message": f"got {encoding}"}])
    inflater = zlib.decompressobj(wbits=47)  # 32 + 15: gzip or zlib, told by the header
    try:
        plain = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise ApiError(400, "invalid_body", "The body is not valid gzip.",
                       [{"field": "body", "message": str(exc)[:200]}]) from None
    if len(plain) > limit or inflater.unconsumed_tail:
        raise ApiError(413, "payload_too_large", f"The export inflates to more than {limit} bytes.",
                       [{"field": "body", "message": "split the export into smaller batches"}])
    return plain


def decode(signal: str, content_type: str | None, body: bytes) -> Export:
    """An export request of `signal` from its body; a 400 when it is not one."""
    encoding = media_type(content_type)
    message = SIGNALS[signal][0]()
    try:
        if encoding == PROTOBUF:
            message.ParseFromString(body)
        else:
            json_format.Parse(body.decode("utf-8"), message, ignore_unknown_fields=True)
    except (DecodeError, json_format.ParseError, UnicodeDecodeError, RecursionError, ValueError) as exc:
        raise ApiError(400, "invalid_body", f"The body is not an OTLP {signal} export.",
                       [{"field": "body", "message": str(exc)[:200]}]) from None
    return Export(signal, encoding, message)


def answer(export: Export, rejected: int = 0, message: str = "") -> tuple[bytes, str]:
    """The export's response (body, content type): success, or partial success
    naming how many records or points were rejected and why."""
    _, response_type, rejected_field = SIGNALS[export.signal]
    response = response_type()
    if rejected or message:
        setattr(response.partial_success, rejected_field, rejected)
        response.partial_success.error_message = message
    if export.encoding == PROTOBUF:
        return response.SerializeToString(), PROTOBUF
    return json_format.MessageToJson(response, indent=None).encode(), JSON


def value_of(any_value):
    """An OTLP AnyValue as plain Python (str, bool, int, float, bytes as hex, list, dict)."""
    which = any_value.WhichOneof("value")
    if which is None:
        return None
    value = getattr(any_value, which)
    if which == "array_value":
        return [value_of(v) for v in value.values]
    if which == "kvlist_value":
        return attributes(value.values)
    if which == "bytes_value":
        return value.hex()
    return value


def attributes(key_values) -> dict:
    return {kv.key: value_of(kv.value) for kv in key_values}
