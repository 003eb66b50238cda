// hs2-proxy: Apache Thrift's own runtime types, described in the same grammar as the services so that
// their numbers are generated too (build.rs). Every Thrift server answers a call it cannot serve with
// a message of type EXCEPTION whose body is a TApplicationException.

namespace rs thrift

// Why a TApplicationException was raised (the `type` field).
enum TApplicationExceptionType {
  UNKNOWN = 0,
  UNKNOWN_METHOD = 1,
  INVALID_MESSAGE_TYPE = 2,
  WRONG_METHOD_NAME = 3,
  BAD_SEQUENCE_ID = 4,
  MISSING_RESULT = 5,
  INTERNAL_ERROR = 6,
  PROTOCOL_ERROR = 7,
  INVALID_TRANSFORM = 8,
  INVALID_PROTOCOL = 9,
  UNSUPPORTED_CLIENT_TYPE = 10,
}

exception TApplicationException {
  1: optional string message,
  2: optional TApplicationExceptionType type,
}
