/**
 * What counts as text wherever input is checked: the request platform (bodies, URLs) and the
 * domain's own bounded fields use these, so both refuse and describe the same things.
 */

// a UTF-16 surrogate without its partner: not text, and PostgreSQL refuses it
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/

/** Text PostgreSQL can store (in `text` and `jsonb`) and every client can read: no U+0000, no unpaired surrogate. */
export const isStorableText = (text: string) => !text.includes("\u0000") && !LONE_SURROGATE.test(text)

export const NOT_STORABLE_TEXT = "must be text without NUL characters or unpaired surrogates"

/**
 * A key as an error path names it: as is when short and plain, else `(key)`, since it may be a
 * secret or a trap. `.` is not plain: it separates the segments of a path.
 */
export const pathKey = (key: string) => key.length <= 64 && /^[A-Za-z0-9_-]+$/.test(key) ? key : "(key)"

const encoder = new TextEncoder()

/** Bytes of `text` in UTF-8 (what a JSON body or a jsonb column holds). */
export const utf8Length = (text: string) => encoder.encode(text).length
