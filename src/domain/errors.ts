import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import { Schema } from "effect"

/**
 * The errors a caller can see (API.md section 0). Each is a tagged error in the code and an RFC 9457
 * problem document on the wire; the `...Problem` schemas convert between the two, so endpoints
 * declare them, the OpenAPI document shows the problem body, and the derived client decodes the
 * body back into the tagged error.
 */

export const FieldIssue = Schema.Struct({
  path: Schema.String,
  message: Schema.String
}).annotations({ identifier: "FieldIssue" })
export type FieldIssue = typeof FieldIssue.Type

const problemFields = {
  detail: Schema.String,
  errors: Schema.optional(Schema.Array(FieldIssue)),
  request_id: Schema.optional(Schema.String),
  /** seconds; sent as the Retry-After header, not in the body */
  retry_after: Schema.optional(Schema.Number)
}

export interface ProblemKind {
  readonly code: string
  readonly status: number
  readonly title: string
}

export class ValidationError extends Schema.TaggedError<ValidationError>()("ValidationError", problemFields) {
  static readonly problem = { code: "validation_error", status: 400, title: "Bad Request" } as const
}
export class Unauthorized extends Schema.TaggedError<Unauthorized>()("Unauthorized", problemFields) {
  static readonly problem = { code: "unauthorized", status: 401, title: "Unauthorized" } as const
}
export class Forbidden extends Schema.TaggedError<Forbidden>()("Forbidden", problemFields) {
  static readonly problem = { code: "forbidden", status: 403, title: "Forbidden" } as const
}
export class NotFound extends Schema.TaggedError<NotFound>()("NotFound", problemFields) {
  static readonly problem = { code: "not_found", status: 404, title: "Not Found" } as const
}
export class MethodNotAllowed extends Schema.TaggedError<MethodNotAllowed>()("MethodNotAllowed", problemFields) {
  static readonly problem = { code: "method_not_allowed", status: 405, title: "Method Not Allowed" } as const
}
export class Conflict extends Schema.TaggedError<Conflict>()("Conflict", problemFields) {
  static readonly problem = { code: "conflict", status: 409, title: "Conflict" } as const
}
export class PayloadTooLarge extends Schema.TaggedError<PayloadTooLarge>()("PayloadTooLarge", problemFields) {
  static readonly problem = { code: "payload_too_large", status: 413, title: "Payload Too Large" } as const
}
export class UnsupportedMediaType
  extends Schema.TaggedError<UnsupportedMediaType>()("UnsupportedMediaType", problemFields)
{
  static readonly problem = { code: "unsupported_media_type", status: 415, title: "Unsupported Media Type" } as const
}
export class RateLimited extends Schema.TaggedError<RateLimited>()("RateLimited", problemFields) {
  static readonly problem = { code: "rate_limited", status: 429, title: "Too Many Requests" } as const
}
export class InternalError extends Schema.TaggedError<InternalError>()("InternalError", problemFields) {
  static readonly problem = { code: "internal_error", status: 500, title: "Internal Server Error" } as const
}
export class UpstreamUnavailable
  extends Schema.TaggedError<UpstreamUnavailable>()("UpstreamUnavailable", problemFields)
{
  static readonly problem = { code: "upstream_unavailable", status: 503, title: "Service Unavailable" } as const
}
export class ServiceUnavailable extends Schema.TaggedError<ServiceUnavailable>()("ServiceUnavailable", problemFields) {
  static readonly problem = { code: "service_unavailable", status: 503, title: "Service Unavailable" } as const
}

export type ProblemError =
  | ValidationError
  | Unauthorized
  | Forbidden
  | NotFound
  | MethodNotAllowed
  | Conflict
  | PayloadTooLarge
  | UnsupportedMediaType
  | RateLimited
  | InternalError
  | UpstreamUnavailable
  | ServiceUnavailable

const problemClasses = [
  ValidationError,
  Unauthorized,
  Forbidden,
  NotFound,
  MethodNotAllowed,
  Conflict,
  PayloadTooLarge,
  UnsupportedMediaType,
  RateLimited,
  InternalError,
  UpstreamUnavailable,
  ServiceUnavailable
] as const

/** The problem kind of a value when it is one of the errors above. */
export const problemKindOf = (u: unknown): ProblemKind | undefined =>
  problemClasses.find((cls) => u instanceof cls)?.problem

/** Most field issues listed in one body: enough to fix a form, bounded whatever was sent. */
export const MAX_LISTED_ISSUES = 20

/** The body of API.md section 0, built from an error, the request id and the current time. */
export const problemBody = (kind: ProblemKind, error: ProblemError, requestId: string, timestamp: string) => {
  const issues = error.errors ?? []
  const detail = issues.length > MAX_LISTED_ISSUES
    ? `${error.detail} (${issues.length} problems; the first ${MAX_LISTED_ISSUES} are listed)`
    : error.detail
  return {
    type: `urn:chatkit:error:${kind.code}`,
    title: kind.title,
    status: kind.status,
    error: kind.code,
    detail,
    request_id: requestId,
    timestamp,
    ...(error.errors === undefined ? {} : { errors: issues.slice(0, MAX_LISTED_ISSUES) })
  }
}

const ProblemDocument = <const Code extends string>(code: Code) =>
  Schema.Struct({
    type: Schema.String,
    title: Schema.String,
    status: Schema.Int,
    error: Schema.Literal(code),
    detail: Schema.String,
    request_id: Schema.String,
    timestamp: Schema.String,
    errors: Schema.optional(Schema.Array(FieldIssue))
  })

type ProblemClass<E extends ProblemError> =
  & (new(props: {
    readonly detail: string
    readonly request_id?: string
    readonly errors?: ReadonlyArray<FieldIssue>
  }) => E)
  & { readonly problem: ProblemKind }

const asProblem = <E extends ProblemError, const Code extends string>(
  cls: ProblemClass<E> & { readonly problem: { readonly code: Code } },
  description: string
) =>
  Schema.transform(ProblemDocument(cls.problem.code), Schema.instanceOf(cls), {
    strict: false,
    decode: (body) =>
      new cls({
        detail: body.detail,
        request_id: body.request_id,
        ...(body.errors === undefined ? {} : { errors: body.errors })
      }),
    encode: (error: E) => problemBody(cls.problem, error, error.request_id ?? "", new Date().toISOString())
  }).annotations({
    ...HttpApiSchema.annotations({ status: cls.problem.status }),
    identifier: `Problem_${cls.problem.code}`,
    description
  })

export const ValidationErrorProblem = asProblem(
  ValidationError,
  `The request does not match its schema; \`errors\` lists the bad fields (the first ${MAX_LISTED_ISSUES}; \`detail\` gives the count when there are more).`
)
export const UnauthorizedProblem = asProblem(Unauthorized, "Missing, invalid or expired credentials.")
export const ForbiddenProblem = asProblem(Forbidden, "Authenticated but not allowed.")
export const NotFoundProblem = asProblem(NotFound, "The resource does not exist or is not visible to the caller.")
export const ConflictProblem = asProblem(
  Conflict,
  "The request conflicts with the current state (a unique key is taken)."
)
export const PayloadTooLargeProblem = asProblem(PayloadTooLarge, "The body is over the size limit.")
export const UnsupportedMediaTypeProblem = asProblem(UnsupportedMediaType, "The body is not application/json.")
export const RateLimitedProblem = asProblem(RateLimited, "Too many requests; retry after `Retry-After` seconds.")
export const InternalErrorProblem = asProblem(
  InternalError,
  "An unexpected error; the request id identifies it in the logs."
)
export const ServiceUnavailableProblem = asProblem(ServiceUnavailable, "A required dependency is unreachable.")
export const UpstreamUnavailableProblem = asProblem(
  UpstreamUnavailable,
  "An upstream provider is failing; retry later."
)

/**
 * Schema messages name the value they got (`Expected string, actual "hunter2"`, `Unable to decode
 * "x" into a number`); the value may be a password, so only the expectation is kept.
 */
export const withoutActualValue = (message: string) => {
  const expected = /^Expected ([\s\S]+?), actual /.exec(message)?.[1]
  if (expected !== undefined) return `Expected ${expected}`.slice(0, 300)
  const decoded = /^Unable to decode [\s\S]* into (an? [\w .]+?)\.?$/.exec(message.split(". ")[0] ?? "")
  if (message.startsWith("Unable to decode ")) return `Expected ${decoded?.[1] ?? "a value of another form"}`
  return message.slice(0, 300)
}
