//! OTLP protobuf for a batch of spans, written straight from the records.
//!
//! The SDK's path to the wire builds a `SpanData` per span (a `String` or an
//! `Arc` per attribute), converts it into the generated protobuf structs
//! (another `String` per key and value), clones the batch once more for the
//! retry loop and only then encodes, computing every nested length on the
//! way. For a database span everything but the timestamps and ids is a
//! `&'static` text made once per handle, so this module writes the bytes of
//! `ExportTraceServiceRequest` directly: one pass, no allocation per span.
//! The resource and the instrumentation scope are encoded once, when the
//! queue starts.
//!
//! Spans that come from the SDK (a request's span, made through `tracing`)
//! are few; they are converted with `opentelemetry-proto` and encoded with
//! `prost`, into the same request. The tests check both against the SDK's
//! own conversion.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::time::{Duration, Instant, SystemTime};

use opentelemetry::InstrumentationScope;
use opentelemetry::trace::SpanKind;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope as ProtoScope;
use opentelemetry_proto::tonic::resource::v1::Resource as ProtoResource;
use opentelemetry_proto::tonic::trace::v1::{ScopeSpans, Span as ProtoSpan};
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SpanData;
use prost::Message as _;

use super::queue::{DbSpan, Failure, Record, Text, What};

// Wire types.
const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;
const FIXED32: u32 = 5;

// Field numbers of opentelemetry/proto/trace/v1/trace.proto and
// collector/trace/v1/trace_service.proto.
const REQUEST_RESOURCE_SPANS: u32 = 1;
const RESOURCE_SPANS_RESOURCE: u32 = 1;
const RESOURCE_SPANS_SCOPE_SPANS: u32 = 2;
const RESOURCE_SPANS_SCHEMA_URL: u32 = 3;
const SCOPE_SPANS_SCOPE: u32 = 1;
const SCOPE_SPANS_SPANS: u32 = 2;
const SCOPE_SPANS_SCHEMA_URL: u32 = 3;
const SPAN_TRACE_ID: u32 = 1;
const SPAN_SPAN_ID: u32 = 2;
const SPAN_PARENT_SPAN_ID: u32 = 4;
const SPAN_NAME: u32 = 5;
const SPAN_KIND: u32 = 6;
const SPAN_START: u32 = 7;
const SPAN_END: u32 = 8;
const SPAN_ATTRIBUTES: u32 = 9;
const SPAN_STATUS: u32 = 15;
const SPAN_FLAGS: u32 = 16;
const STATUS_MESSAGE: u32 = 2;
const STATUS_CODE: u32 = 3;
const STATUS_CODE_ERROR: u64 = 2;
const KEY_VALUE_KEY: u32 = 1;
const KEY_VALUE_VALUE: u32 = 2;
const ANY_VALUE_STRING: u32 = 1;
const ANY_VALUE_INT: u32 = 3;

/// `SpanFlags`: the trace flags (sampled), and that the parent's remoteness
/// is known (`CONTEXT_HAS_IS_REMOTE`) and, when set, remote
/// (`CONTEXT_IS_REMOTE`) — as the SDK's conversion sets them.
const FLAGS_SAMPLED: u32 = 0x01;
const FLAGS_HAS_IS_REMOTE: u32 = 0x100;
const FLAGS_IS_REMOTE: u32 = 0x200;

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        // Truncation intended: the low seven bits, with the continuation bit.
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn varint_len(value: u64) -> usize {
    // One byte per started group of seven bits (at least one).
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

fn key(out: &mut Vec<u8>, field: u32, wire: u32) {
    varint(out, u64::from(field << 3 | wire));
}

fn bytes(out: &mut Vec<u8>, field: u32, value: &[u8]) {
    key(out, field, LEN);
    varint(out, value.len() as u64);
    out.extend_from_slice(value);
}

/// The length of a `KeyValue` with key `name` and an `AnyValue` of `any`
/// bytes.
fn key_value_len(name: &str, any: usize) -> usize {
    1 + varint_len(name.len() as u64) + name.len() + 1 + varint_len(any as u64) + any
}

/// What precedes a `KeyValue`'s value field, as an element of `field`: the
/// element's tag and length, the key, the `AnyValue`'s tag and length.
fn key_value_head(out: &mut Vec<u8>, field: u32, name: &str, any: usize) {
    key(out, field, LEN);
    varint(out, key_value_len(name, any) as u64);
    bytes(out, KEY_VALUE_KEY, name.as_bytes());
    key(out, KEY_VALUE_VALUE, LEN);
    varint(out, any as u64);
}

/// The length of a string `AnyValue`.
fn string_value_len(value: &str) -> usize {
    1 + varint_len(value.len() as u64) + value.len()
}

/// A `KeyValue` whose value is a string, as an element of `field`.
fn string_attribute(out: &mut Vec<u8>, field: u32, name: &str, value: &str) {
    key_value_head(out, field, name, string_value_len(value));
    bytes(out, ANY_VALUE_STRING, value.as_bytes());
}

/// The length of a [`string_attribute`] element.
fn string_attribute_len(name: &str, value: &str) -> usize {
    let entry = key_value_len(name, string_value_len(value));
    1 + varint_len(entry as u64) + entry
}

/// A `KeyValue` whose value is an integer, as an element of `field`.
fn int_attribute(out: &mut Vec<u8>, field: u32, name: &str, value: i64) {
    // Negative integers are ten-byte varints of their two's complement.
    let wire = value as u64;
    key_value_head(out, field, name, 1 + varint_len(wire));
    key(out, ANY_VALUE_INT, VARINT);
    varint(out, wire);
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// Turns a span's monotonic start into wall-clock time. Spans read the
/// monotonic clock only (once per operation, for its duration and its span);
/// the export thread reads the wall clock once per request, and a span
/// started that long before the reading started that long before its
/// wall-clock time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WallClock {
    /// Nanoseconds since the Unix epoch at `at`.
    unix_nanos: u64,
    at: Instant,
}

impl WallClock {
    pub(crate) fn now() -> Self {
        let at = Instant::now();
        let unix_nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, nanos);
        Self { unix_nanos, at }
    }

    /// `time` in nanoseconds since the Unix epoch.
    pub(crate) fn unix_nanos(&self, time: Instant) -> u64 {
        match self.at.checked_duration_since(time) {
            Some(before) => self.unix_nanos.saturating_sub(nanos(before)),
            None => self.unix_nanos.saturating_add(nanos(time - self.at)),
        }
    }
}

fn kind(kind: &SpanKind) -> u8 {
    match kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    }
}

/// Span fields already encoded, by the identity of the `&'static` texts
/// they were made from: a span's name with the attributes a handle gives
/// every span (`db.system.name`, `db.namespace`, `server.address`,
/// `server.port`) and its operation's (`db.operation.name`), or with its
/// pool's name. A span then copies one block instead of writing each field.
/// The texts are interned process-wide, so handles to one database share
/// their keys: a process holds about (databases × statement keywords × span
/// names) blocks, a few hundred at most.
#[derive(Default)]
struct Blocks {
    entries: Vec<(BlockKey, Vec<u8>)>,
    /// Where each key's block is in `entries`.
    index: HashMap<BlockKey, usize, BuildHasherDefault<KeyHasher>>,
    /// The last block used: consecutive spans are often alike.
    last: usize,
}

#[derive(PartialEq, Eq, Hash, Clone, Copy)]
enum BlockKey {
    /// A statement or transaction of one handle: its name, the handle's
    /// attributes and its operation's.
    Operation {
        name: (usize, usize),
        namespace: (usize, usize),
        address: (usize, usize),
        port: Option<u16>,
        operation: Option<(usize, usize)>,
    },
    /// An `acquire` or `connect` of one pool: its name and the pool's.
    Pool {
        name: (usize, usize),
        pool: (usize, usize),
    },
}

/// The identity of a `&'static str`.
fn identity(text: &'static str) -> (usize, usize) {
    (text.as_ptr().addr(), text.len())
}

/// A hasher for [`BlockKey`]s, which are a few machine words (addresses,
/// lengths) and hashed once per span: a multiply and a rotate per word, as
/// in rustc's `FxHasher`, instead of SipHash's rounds. The keys are not
/// chosen by anyone who could benefit from collisions.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(u64::from(byte));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.write_u64(u64::from(n));
    }

    fn write_u16(&mut self, n: u16) {
        self.write_u64(u64::from(n));
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn write_isize(&mut self, n: isize) {
        self.write_u64(n as u64);
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Entries kept before the cache starts over: several times what a process
/// needs (see [`Blocks`]). Past it, one in `MAX_BLOCKS` spans pays for
/// encoding a block again after the clear; a process with more distinct
/// keys than this still encodes correctly, only slower.
const MAX_BLOCKS: usize = 2048;

impl Blocks {
    /// `key`'s block, made by `make` the first time.
    fn get(&mut self, key: BlockKey, make: impl FnOnce(&mut Vec<u8>)) -> &[u8] {
        if self.entries.get(self.last).is_none_or(|(k, _)| *k != key) {
            self.last = match self.index.get(&key) {
                Some(&at) => at,
                None => {
                    if self.entries.len() >= MAX_BLOCKS {
                        self.entries.clear();
                        self.index.clear();
                    }
                    let mut block = Vec::new();
                    make(&mut block);
                    self.entries.push((key, block));
                    self.index.insert(key, self.entries.len() - 1);
                    self.entries.len() - 1
                }
            };
        }
        &self.entries[self.last].1
    }
}

/// The fixed-size fields of a span: at most 64 bytes.
struct Head {
    buf: [u8; 64],
    len: usize,
}

impl Default for Head {
    fn default() -> Self {
        Self {
            buf: [0; 64],
            len: 0,
        }
    }
}

impl Head {
    fn put(&mut self, bytes: &[u8]) {
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// The tag of `flags` (field 16, so two bytes of varint).
const FLAGS_TAG: [u8; 2] = {
    let tag = SPAN_FLAGS << 3 | FIXED32;
    [(tag as u8 & 0x7f) | 0x80, (tag >> 7) as u8]
};

/// A one-byte field tag (fields 1 to 15).
const fn tag(field: u32, wire: u32) -> u8 {
    assert!(field < 16);
    (field << 3 | wire) as u8
}

/// A reused buffer for the part of a span whose length is not known in
/// advance.
#[derive(Default)]
struct Scratch {
    /// What follows the attribute blocks and the text: the failure's
    /// attributes and status, a pool span's connection id.
    tail: Vec<u8>,
}

/// Appends one database span, as a `ScopeSpans.spans` element, to `out`:
/// its parts are measured first, so the span is written once, in place.
fn db_span(
    out: &mut Vec<u8>,
    span: &DbSpan,
    clock: &WallClock,
    blocks: &mut Blocks,
    scratch: &mut Scratch,
) {
    let Scratch { tail } = scratch;
    tail.clear();
    // The fixed-size fields, written into an array: no capacity checks, no
    // calls. The tags fit in one byte except `flags`' (field 16).
    let mut head = Head::default();
    head.put(&[tag(SPAN_TRACE_ID, LEN), 16]);
    head.put(&span.trace_id.to_bytes());
    head.put(&[tag(SPAN_SPAN_ID, LEN), 8]);
    head.put(&span.span_id.to_bytes());
    if span.parent_span_id != opentelemetry::trace::SpanId::INVALID {
        head.put(&[tag(SPAN_PARENT_SPAN_ID, LEN), 8]);
        head.put(&span.parent_span_id.to_bytes());
    }
    head.put(&[tag(SPAN_KIND, VARINT), kind(&span.kind)]);
    let start = clock.unix_nanos(span.start);
    let end = start.saturating_add(nanos(span.duration));
    head.put(&[tag(SPAN_START, FIXED64)]);
    head.put(&start.to_le_bytes());
    head.put(&[tag(SPAN_END, FIXED64)]);
    head.put(&end.to_le_bytes());
    let mut flags = FLAGS_SAMPLED | FLAGS_HAS_IS_REMOTE;
    if span.parent_remote {
        flags |= FLAGS_IS_REMOTE;
    }
    head.put(&FLAGS_TAG);
    head.put(&flags.to_le_bytes());
    let head = head.bytes();

    let name = span.name;
    let mut text = None;
    let block = match &span.what {
        What::Operation {
            namespace,
            address,
            port,
            operation,
            text: query,
            failure,
        } => {
            text = match query {
                Some(Text::Static(query)) => Some(*query),
                Some(Text::Owned(query)) => Some(&**query),
                None => None,
            };
            if let Some(failure) = failure {
                let Failure {
                    error_type,
                    status_code,
                    message,
                } = &**failure;
                if let Some(code) = status_code {
                    string_attribute(tail, SPAN_ATTRIBUTES, "db.response.status_code", code);
                }
                string_attribute(tail, SPAN_ATTRIBUTES, "error.type", error_type);
                let status = 1 + varint_len(message.len() as u64) + message.len() + 2;
                key(tail, SPAN_STATUS, LEN);
                varint(tail, status as u64);
                bytes(tail, STATUS_MESSAGE, message.as_bytes());
                key(tail, STATUS_CODE, VARINT);
                varint(tail, STATUS_CODE_ERROR);
            }
            let key = BlockKey::Operation {
                name: identity(name),
                namespace: identity(namespace),
                address: identity(address),
                port: *port,
                operation: operation.map(identity),
            };
            blocks.get(key, |b| {
                bytes(b, SPAN_NAME, name.as_bytes());
                string_attribute(b, SPAN_ATTRIBUTES, "db.system.name", "postgresql");
                string_attribute(b, SPAN_ATTRIBUTES, "db.namespace", namespace);
                string_attribute(b, SPAN_ATTRIBUTES, "server.address", address);
                if let Some(port) = port {
                    int_attribute(b, SPAN_ATTRIBUTES, "server.port", i64::from(*port));
                }
                if let Some(operation) = operation {
                    string_attribute(b, SPAN_ATTRIBUTES, "db.operation.name", operation);
                }
            })
        }
        What::Pool {
            pool,
            connection_id,
        } => {
            int_attribute(
                tail,
                SPAN_ATTRIBUTES,
                "pgline.connection.id",
                i64::try_from(*connection_id).unwrap_or(i64::MAX),
            );
            let key = BlockKey::Pool {
                name: identity(name),
                pool: identity(pool),
            };
            blocks.get(key, |b| {
                bytes(b, SPAN_NAME, name.as_bytes());
                string_attribute(b, SPAN_ATTRIBUTES, crate::metrics::POOL_NAME, pool);
            })
        }
    };
    let len = head.len()
        + block.len()
        + text.map_or(0, |t| string_attribute_len("db.query.text", t))
        + tail.len();
    key(out, SCOPE_SPANS_SPANS, LEN);
    varint(out, len as u64);
    out.extend_from_slice(head);
    out.extend_from_slice(block);
    if let Some(text) = text {
        string_attribute(out, SPAN_ATTRIBUTES, "db.query.text", text);
    }
    out.extend_from_slice(tail);
}

/// Builds `ExportTraceServiceRequest`s: [`add`](Encoder::add) the records
/// of a batch, then [`finish`](Encoder::finish). One lives on the export
/// thread; its buffers are reused from batch to batch.
pub(crate) struct Encoder {
    /// `ResourceSpans`' resource and schema URL fields, encoded once.
    resource: Vec<u8>,
    /// The database spans' `ScopeSpans` scope and schema URL fields.
    scope: Vec<u8>,
    /// The database spans' `Span` fields so far.
    spans: Vec<u8>,
    /// Parts of one span, before its length is known.
    scratch: Scratch,
    /// Spans from the SDK, by their scope.
    sdk: Vec<(InstrumentationScope, Vec<ProtoSpan>)>,
    /// The encoded size of the spans in `sdk`.
    sdk_bytes: usize,
    blocks: Blocks,
    /// How many spans were added since the last `finish`.
    count: usize,
    /// The wall clock, read at the first span of each request.
    clock: WallClock,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

impl Encoder {
    /// An encoder for spans of `resource`; database spans carry `scope`.
    pub(crate) fn new(resource: &Resource, scope: &InstrumentationScope) -> Self {
        let resource = ResourceAttributesWithSchema::from(resource);
        let mut head = Vec::new();
        let proto = ProtoResource {
            attributes: resource.attributes.0,
            dropped_attributes_count: 0,
            entity_refs: Vec::new(),
        };
        bytes(&mut head, RESOURCE_SPANS_RESOURCE, &proto.encode_to_vec());
        if let Some(url) = resource.schema_url.filter(|u| !u.is_empty()) {
            bytes(&mut head, RESOURCE_SPANS_SCHEMA_URL, url.as_bytes());
        }
        let mut scope_head = Vec::new();
        bytes(
            &mut scope_head,
            SCOPE_SPANS_SCOPE,
            &ProtoScope::from((scope, None)).encode_to_vec(),
        );
        if let Some(url) = scope.schema_url().filter(|u| !u.is_empty()) {
            bytes(&mut scope_head, SCOPE_SPANS_SCHEMA_URL, url.as_bytes());
        }
        Self {
            resource: head,
            scope: scope_head,
            spans: Vec::new(),
            scratch: Scratch::default(),
            sdk: Vec::new(),
            sdk_bytes: 0,
            blocks: Blocks::default(),
            count: 0,
            clock: WallClock::now(),
        }
    }

    /// Adds one span to the request being built.
    pub(crate) fn add(&mut self, record: Record) {
        if self.count == 0 {
            self.clock = WallClock::now();
        }
        self.count += 1;
        match record {
            Record::Db(span) => db_span(
                &mut self.spans,
                &span,
                &self.clock,
                &mut self.blocks,
                &mut self.scratch,
            ),
            Record::Sdk(span) => self.add_sdk(*span),
        }
    }

    fn add_sdk(&mut self, span: SpanData) {
        let at = match self
            .sdk
            .iter()
            .position(|(scope, _)| *scope == span.instrumentation_scope)
        {
            Some(at) => at,
            None => {
                self.sdk
                    .push((span.instrumentation_scope.clone(), Vec::new()));
                self.sdk.len() - 1
            }
        };
        let span = ProtoSpan::from(span);
        // As an element of `ScopeSpans.spans`: a tag, a length, the span.
        let len = span.encoded_len();
        self.sdk_bytes += 1 + varint_len(len as u64) + len;
        self.sdk[at].1.push(span);
    }

    /// The wall clock the last request's database spans were dated with.
    #[cfg(test)]
    pub(crate) fn clock(&self) -> WallClock {
        self.clock
    }

    /// How many spans the request being built holds.
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    /// About how many bytes the request being built takes: its spans,
    /// without the few bytes of resource and scopes around them.
    pub(crate) fn size(&self) -> usize {
        self.spans.len() + self.sdk_bytes
    }

    /// The encoded request with every span added since the last call, and
    /// the encoder emptied for the next.
    pub(crate) fn finish(&mut self) -> Vec<u8> {
        let mut sdk = Vec::new();
        self.sdk_bytes = 0;
        for (scope, spans) in self.sdk.drain(..) {
            let scope_spans = ScopeSpans {
                schema_url: scope.schema_url().unwrap_or_default().to_owned(),
                scope: Some(ProtoScope::from((&scope, None))),
                spans,
            };
            key(&mut sdk, RESOURCE_SPANS_SCOPE_SPANS, LEN);
            scope_spans
                .encode_length_delimited(&mut sdk)
                .unwrap_or_else(|_| unreachable!("a Vec grows as needed"));
        }
        // Lengths first, so that the spans are copied once, into a buffer
        // of the right size.
        let db = self.scope.len() + self.spans.len();
        let mut body = self.resource.len() + sdk.len();
        if !self.spans.is_empty() {
            body += 1 + varint_len(db as u64) + db;
        }
        let mut request = Vec::with_capacity(1 + varint_len(body as u64) + body);
        key(&mut request, REQUEST_RESOURCE_SPANS, LEN);
        varint(&mut request, body as u64);
        request.extend_from_slice(&self.resource);
        if !self.spans.is_empty() {
            key(&mut request, RESOURCE_SPANS_SCOPE_SPANS, LEN);
            varint(&mut request, db as u64);
            request.extend_from_slice(&self.scope);
            request.extend_from_slice(&self.spans);
            self.spans.clear();
        }
        request.extend_from_slice(&sdk);
        self.count = 0;
        request
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::borrow::Cow;
    use std::time::{Duration, Instant, SystemTime};

    use opentelemetry::KeyValue;
    use opentelemetry::trace::{SpanContext, SpanId, Status, TraceFlags, TraceId, TraceState};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::Status as ProtoStatus;
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};

    use super::*;

    /// The SDK's form of a database span, with the attributes of the
    /// conventions: what the SDK's own exporter would have been given.
    pub(crate) fn span_data(
        span: &DbSpan,
        scope: &InstrumentationScope,
        clock: WallClock,
    ) -> SpanData {
        let start = SystemTime::UNIX_EPOCH + Duration::from_nanos(clock.unix_nanos(span.start));
        let mut attributes = Vec::new();
        let mut status = Status::Unset;
        match &span.what {
            What::Operation {
                namespace,
                address,
                port,
                operation,
                text,
                failure,
            } => {
                attributes.push(KeyValue::new("db.system.name", "postgresql"));
                attributes.push(KeyValue::new("db.namespace", *namespace));
                attributes.push(KeyValue::new("server.address", *address));
                if let Some(port) = port {
                    attributes.push(KeyValue::new("server.port", i64::from(*port)));
                }
                if let Some(operation) = operation {
                    attributes.push(KeyValue::new("db.operation.name", *operation));
                }
                match text {
                    Some(Text::Static(text)) => {
                        attributes.push(KeyValue::new("db.query.text", *text));
                    }
                    Some(Text::Owned(text)) => {
                        attributes.push(KeyValue::new("db.query.text", text.to_string()));
                    }
                    None => {}
                }
                if let Some(failure) = failure {
                    if let Some(code) = &failure.status_code {
                        attributes.push(KeyValue::new("db.response.status_code", code.clone()));
                    }
                    attributes.push(KeyValue::new("error.type", failure.error_type.clone()));
                    status = Status::error(failure.message.clone());
                }
            }
            What::Pool {
                pool,
                connection_id,
            } => {
                attributes.push(KeyValue::new(crate::metrics::POOL_NAME, *pool));
                attributes.push(KeyValue::new(
                    "pgline.connection.id",
                    i64::try_from(*connection_id).unwrap_or(i64::MAX),
                ));
            }
        }
        SpanData {
            span_context: SpanContext::new(
                span.trace_id,
                span.span_id,
                TraceFlags::SAMPLED,
                false,
                TraceState::NONE,
            ),
            parent_span_id: span.parent_span_id,
            parent_span_is_remote: span.parent_remote,
            span_kind: span.kind.clone(),
            name: Cow::Borrowed(span.name),
            start_time: start,
            end_time: start + span.duration,
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status,
            instrumentation_scope: scope.clone(),
        }
    }

    /// The spans of an encoded request, decoded with `prost`.
    pub(crate) fn decode(request: &[u8]) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest::decode(request).unwrap_or_else(|e| panic!("decode: {e}"))
    }

    /// The SDK always sends a status; an unset one is the same as none.
    fn normalized(mut span: ProtoSpan) -> ProtoSpan {
        if span.status == Some(ProtoStatus::default()) {
            span.status = None;
        }
        span
    }

    fn spans() -> Vec<DbSpan> {
        // The same start each call, for comparing before and after encoding.
        static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        let start = *START.get_or_init(Instant::now);
        let base = |name, what| DbSpan {
            trace_id: TraceId::from(0x0123_4567_89ab_cdef_0011_2233_4455_6677_u128),
            span_id: SpanId::from(0x1122_3344_5566_7788_u64),
            parent_span_id: SpanId::INVALID,
            parent_remote: false,
            start,
            duration: Duration::from_micros(250),
            name,
            kind: SpanKind::Client,
            what,
        };
        let operation = |text, failure, port| What::Operation {
            namespace: "plant",
            address: "db.example",
            port,
            operation: Some("SELECT"),
            text,
            failure,
        };
        let long = "SELECT ".to_owned() + &"x, ".repeat(100) + "1 FROM orders";
        vec![
            base(
                "SELECT plant",
                operation(Some(Text::Static("SELECT 1")), None, None),
            ),
            DbSpan {
                parent_span_id: SpanId::from(0xffee_ddcc_bbaa_9988_u64),
                parent_remote: true,
                ..base(
                    "SELECT orders",
                    operation(
                        Some(Text::Owned(long.into())),
                        Some(Box::new(Failure {
                            error_type: Cow::Borrowed("23505"),
                            status_code: Some("23505".to_owned()),
                            message: "unique_violation".to_owned(),
                        })),
                        Some(6543),
                    ),
                )
            },
            DbSpan {
                parent_span_id: SpanId::from(7u64),
                duration: Duration::ZERO,
                ..base(
                    "TRANSACTION plant",
                    What::Operation {
                        namespace: "plant",
                        address: "db.example",
                        port: None,
                        operation: None,
                        text: None,
                        failure: Some(Box::new(Failure {
                            error_type: Cow::Borrowed("cancelled"),
                            status_code: None,
                            message: String::new(),
                        })),
                    },
                )
            },
            DbSpan {
                kind: SpanKind::Internal,
                ..base(
                    "acquire",
                    What::Pool {
                        pool: "main",
                        connection_id: u64::MAX,
                    },
                )
            },
        ]
    }

    #[test]
    fn database_spans_encode_as_the_sdk_would_send_them() {
        let resource = crate::setup::resource("encode-test");
        let scope = InstrumentationScope::builder("pgline")
            .with_version("9.9.9")
            .build();
        let mut encoder = Encoder::new(&resource, &scope);
        for span in spans() {
            encoder.add(Record::Db(span));
        }
        assert_eq!(encoder.len(), 4);
        let request = decode(&encoder.finish());
        assert_eq!(encoder.len(), 0);

        let expected_resource = ResourceAttributesWithSchema::from(&resource);
        assert_eq!(request.resource_spans.len(), 1);
        let resource_spans = &request.resource_spans[0];
        assert_eq!(
            resource_spans.resource.as_ref().map(|r| &r.attributes),
            Some(&expected_resource.attributes.0)
        );
        assert_eq!(resource_spans.scope_spans.len(), 1);
        let scope_spans = &resource_spans.scope_spans[0];
        assert_eq!(scope_spans.scope, Some(ProtoScope::from((&scope, None))));
        let expected: Vec<ProtoSpan> = spans()
            .iter()
            .map(|s| normalized(ProtoSpan::from(span_data(s, &scope, encoder.clock()))))
            .collect();
        assert_eq!(scope_spans.spans, expected);

        // The buffers are reused: a second request holds only its own.
        encoder.add(Record::Db(spans().remove(3)));
        let again = decode(&encoder.finish());
        // Dated with the wall clock read again for this request.
        let expected = normalized(ProtoSpan::from(span_data(
            &spans().remove(3),
            &scope,
            encoder.clock(),
        )));
        assert_eq!(again.resource_spans[0].scope_spans[0].spans, [expected]);
    }

    #[test]
    fn sdk_spans_join_the_request_under_their_own_scope() {
        let resource = crate::setup::resource("encode-test");
        let pgline = InstrumentationScope::builder("pgline").build();
        let other = InstrumentationScope::builder("tracing-opentelemetry").build();
        let mut encoder = Encoder::new(&resource, &pgline);
        let mut request_span = span_data(&spans().remove(0), &other, WallClock::now());
        request_span.name = Cow::Borrowed("POST /api/orders");
        request_span.span_kind = SpanKind::Server;
        request_span.attributes = vec![KeyValue::new("http.response.status_code", 201)];
        encoder.add(Record::Sdk(Box::new(request_span.clone())));
        encoder.add(Record::Db(spans().remove(3)));
        encoder.add(Record::Sdk(Box::new(request_span.clone())));
        let request = decode(&encoder.finish());
        let scope_spans = &request.resource_spans[0].scope_spans;
        assert_eq!(scope_spans.len(), 2);
        assert_eq!(
            scope_spans[0].scope.as_ref().map(|s| s.name.as_str()),
            Some("pgline")
        );
        assert_eq!(scope_spans[0].spans.len(), 1);
        assert_eq!(
            scope_spans[1].scope.as_ref().map(|s| s.name.as_str()),
            Some("tracing-opentelemetry")
        );
        assert_eq!(
            scope_spans[1].spans,
            vec![
                ProtoSpan::from(request_span.clone()),
                ProtoSpan::from(request_span)
            ]
        );
    }

    /// A database span of 5 µs from `start`, numbered `i`.
    fn db_span(
        i: usize,
        start: Instant,
        namespace: &'static str,
        port: Option<u16>,
        operation: Option<&'static str>,
    ) -> DbSpan {
        DbSpan {
            trace_id: TraceId::from(i as u128 + 1),
            span_id: SpanId::from(i as u64 + 1),
            parent_span_id: SpanId::INVALID,
            parent_remote: false,
            start,
            duration: Duration::from_micros(5),
            name: "q",
            kind: SpanKind::Client,
            what: What::Operation {
                namespace,
                address: "h",
                port,
                operation,
                text: None,
                failure: None,
            },
        }
    }

    /// Encodes `spans` (all starting at `start`) in one request and checks
    /// it against the SDK's conversion of the same spans.
    fn assert_encoded_as_the_sdk_would(spans: Vec<DbSpan>, start: Instant) {
        let resource = crate::setup::resource("encode-test");
        let scope = InstrumentationScope::builder("pgline").build();
        let mut encoder = Encoder::new(&resource, &scope);
        let mut sent = Vec::new();
        for span in spans {
            sent.push(span_data(&span, &scope, WallClock::now()));
            encoder.add(Record::Db(span));
        }
        let request = decode(&encoder.finish());
        let expected: Vec<ProtoSpan> = sent
            .into_iter()
            .map(|mut span| {
                // Dated with the clock the encoder read.
                let start = SystemTime::UNIX_EPOCH
                    + Duration::from_nanos(encoder.clock().unix_nanos(start));
                span.start_time = start;
                span.end_time = start + Duration::from_micros(5);
                normalized(ProtoSpan::from(span))
            })
            .collect();
        assert_eq!(request.resource_spans[0].scope_spans[0].spans, expected);
    }

    #[test]
    fn more_handles_than_the_block_cache_holds_still_encode_right() {
        let start = Instant::now();
        // Each span has a handle and an operation the cache has not seen:
        // the cache fills and starts over several times mid-request.
        let spans = (0..(MAX_BLOCKS * 3))
            .map(|i| {
                let namespace: &'static str = Box::leak(format!("db{i}").into_boxed_str());
                let operation = crate::sql::KEYWORDS[i % crate::sql::KEYWORDS.len()];
                db_span(i, start, namespace, None, Some(operation))
            })
            .collect();
        assert_encoded_as_the_sdk_would(spans, start);
    }

    #[test]
    fn spans_that_differ_only_in_port_or_operation_get_their_own_blocks() {
        let start = Instant::now();
        // Same name, namespace and address; interleaved, so neither the
        // last-block memo nor the index may answer for a neighbour.
        let variants = [
            (Some(5432), Some("SELECT")),
            (Some(5433), Some("SELECT")),
            (None, Some("SELECT")),
            (Some(5432), Some("INSERT")),
            (Some(5432), None),
        ];
        let spans = (0..variants.len() * 3)
            .map(|i| {
                let (port, operation) = variants[(i * 2) % variants.len()];
                db_span(i, start, "plant", port, operation)
            })
            .collect();
        assert_encoded_as_the_sdk_would(spans, start);
    }

    #[test]
    fn span_starts_are_dated_from_one_wall_clock_reading() {
        let clock = WallClock::now();
        let ms = Duration::from_millis(1);
        assert_eq!(clock.unix_nanos(clock.at), clock.unix_nanos);
        assert_eq!(
            clock.unix_nanos(clock.at - ms),
            clock.unix_nanos - 1_000_000
        );
        assert_eq!(
            clock.unix_nanos(clock.at + ms),
            clock.unix_nanos + 1_000_000
        );
        // A span starting now is dated between two wall-clock readings that
        // bracket it (give or take the nanoseconds between the clock's own
        // two readings; a millisecond of slack).
        let wall = || {
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, nanos)
        };
        let before = wall();
        let dated = WallClock::now().unix_nanos(Instant::now());
        let after = wall();
        assert!(
            before - 1_000_000 <= dated && dated <= after + 1_000_000,
            "{before} <= {dated} <= {after}"
        );
    }

    #[test]
    fn varint_lengths_match_the_encoding() {
        for value in [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut out = Vec::new();
            varint(&mut out, value);
            assert_eq!(out.len(), varint_len(value), "{value}");
            assert_eq!(prost::encoding::encoded_len_varint(value), out.len());
        }
    }
}
