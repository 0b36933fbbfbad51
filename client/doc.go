// Package client uploads files to scangate (or any server speaking the
// MetaDefender Core REST API) and reads their verdicts.
//
// A Client talks to one or more scangate ingest nodes. Any node takes any
// request, so the client spreads its requests, and the parts of a large
// file, over every server it was given, and moves a failed request to the
// next one.
//
// # Uploading
//
//   - [Client.Upload]: the whole file in one POST /file, streamed from an
//     io.Reader of known size. Best for small files.
//   - [Client.UploadMultipart]: POST /file/multipart, then parts in parallel
//     over every server; resumable with [MultipartOptions].DataID, which
//     sends only the ranges the server reports missing.
//   - [Client.UploadChunked]: the older sequential protocol (X-File-Size,
//     X-File-ID), for servers without multipart.
//   - [Client.UploadPresigned]: pre-signed part URLs
//     (/file/v1/files/upload/parts), each part PUT to its URL.
//
// # Results
//
// [Client.Wait] polls GET /file/{data_id} with backoff until the scan is
// done; [Client.Result] and [Client.Hash] look once. An unknown id or hash
// is [ErrNotFound]. [Result.Blocked] and [Result.Infected] answer what
// most integrations want to know.
//
// # Retries
//
// Every request that is safe to repeat is retried with exponential backoff
// and jitter, on the next server, honouring Retry-After on 503 (the server
// is busy) and 403 (scan limit reached). What is safe to repeat:
//
//   - reads (GET), session status, abort: always;
//   - a multipart part or a pre-signed PUT: always — the server stores a
//     part idempotently, and a part for a completed session is answered
//     200 and not stored again;
//   - a request that creates something (POST /file, a sequential chunk,
//     POST /file/multipart, login): only when the server certainly did not
//     act on it. That is when the connection failed before the whole
//     request was written (the server needs every byte of a body before it
//     accepts it: connection refused, reset while sending), or when the
//     server answered 503 or 403 with Retry-After, which scangate sends
//     before it reads the body and which leave nothing behind. A failure
//     after the whole request was written (a timeout waiting for the
//     answer, a connection reset while reading it) may hide an accepted
//     upload: retrying it could scan the file twice, or append a chunk
//     twice. Such errors are returned wrapped in [ErrOutcomeUnknown] and
//     the caller decides.
//
// # Timeouts
//
// Uploads have no overall deadline: a large file on a slow link takes what
// it takes. Instead a request fails when its body makes no progress for
// the idle timeout, or when the answer has not begun this long after the
// last byte was sent (see [WithTimeouts]). Use the context to bound or
// cancel a whole operation.
package client
