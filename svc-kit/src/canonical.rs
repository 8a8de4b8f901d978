//! RFC 8785 (JCS) canonical JSON of any `Serialize` value, written in one pass where that is
//! plainly the general algorithm, and by `serde_json_canonicalizer` otherwise.
//!
//! The crate serializes every object key to JSON, parses it back and collects it as UTF-16 to
//! sort it, with a buffer per member: about 100,000 instructions per audit event, and it is
//! reached on every call (the audit event's canonical bytes, the arguments digest). What we
//! canonicalize is proto3 JSON and tool arguments: ASCII keys (for which UTF-16 order is byte
//! order) and integers that JCS writes as serde_json does. For those this module writes the
//! value straight from its `Serialize` impl, sorting each object's members by key; anything
//! else (a float, a key that is not printable ASCII, an integer beyond 2^53, bytes, a tuple) makes it
//! give up, and the crate writes the value instead, so the bytes never differ from the crate's.

use std::fmt::Display;
use std::ops::Range;

use serde::ser::{self, Serialize};

/// Largest integer JCS writes exactly as it is (2^53: beyond it numbers are IEEE doubles).
const EXACT_INTEGER: u64 = 1 << 53;

/// Returns the RFC 8785 canonical form of `value`.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(1024);
    match value.serialize(Writer { out: &mut out }) {
        Ok(()) => Ok(out),
        Err(NotPlain) => serde_json_canonicalizer::to_vec(&value),
    }
}

/// Says the value holds something the one-pass writer leaves to the crate (or that its
/// `Serialize` impl failed, which the crate then reports).
#[derive(Debug)]
struct NotPlain;

impl Display for NotPlain {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("not plain JSON")
    }
}

impl std::error::Error for NotPlain {}

impl ser::Error for NotPlain {
    fn custom<T: Display>(_: T) -> Self {
        Self
    }
}

/// Writes one value's canonical bytes to `out`.
struct Writer<'a> {
    out: &'a mut Vec<u8>,
}

impl Writer<'_> {
    fn integer(self, value: u64, negative: bool) -> Result<(), NotPlain> {
        if value > EXACT_INTEGER {
            return Err(NotPlain);
        }
        if negative && value != 0 {
            self.out.push(b'-');
        }
        serde_json::to_writer(&mut *self.out, &value).map_err(|_| NotPlain)
    }

    fn signed(self, value: i64) -> Result<(), NotPlain> {
        self.integer(value.unsigned_abs(), value < 0)
    }

    fn string(self, value: &str) -> Result<(), NotPlain> {
        serde_json::to_writer(&mut *self.out, value).map_err(|_| NotPlain)
    }
}

impl<'a> ser::Serializer for Writer<'a> {
    type Ok = ();
    type Error = NotPlain;
    type SerializeSeq = Array<'a>;
    type SerializeTuple = ser::Impossible<(), NotPlain>;
    type SerializeTupleStruct = ser::Impossible<(), NotPlain>;
    type SerializeTupleVariant = ser::Impossible<(), NotPlain>;
    type SerializeMap = Object<'a>;
    type SerializeStruct = Object<'a>;
    type SerializeStructVariant = ser::Impossible<(), NotPlain>;

    fn serialize_bool(self, value: bool) -> Result<(), NotPlain> {
        self.out
            .extend_from_slice(if value { b"true" } else { b"false" });
        Ok(())
    }

    fn serialize_i8(self, value: i8) -> Result<(), NotPlain> {
        self.signed(value.into())
    }

    fn serialize_i16(self, value: i16) -> Result<(), NotPlain> {
        self.signed(value.into())
    }

    fn serialize_i32(self, value: i32) -> Result<(), NotPlain> {
        self.signed(value.into())
    }

    fn serialize_i64(self, value: i64) -> Result<(), NotPlain> {
        self.signed(value)
    }

    fn serialize_u8(self, value: u8) -> Result<(), NotPlain> {
        self.integer(value.into(), false)
    }

    fn serialize_u16(self, value: u16) -> Result<(), NotPlain> {
        self.integer(value.into(), false)
    }

    fn serialize_u32(self, value: u32) -> Result<(), NotPlain> {
        self.integer(value.into(), false)
    }

    fn serialize_u64(self, value: u64) -> Result<(), NotPlain> {
        self.integer(value, false)
    }

    fn serialize_f32(self, _: f32) -> Result<(), NotPlain> {
        Err(NotPlain)
    }

    fn serialize_f64(self, _: f64) -> Result<(), NotPlain> {
        Err(NotPlain)
    }

    fn serialize_char(self, value: char) -> Result<(), NotPlain> {
        self.string(value.encode_utf8(&mut [0; 4]))
    }

    fn serialize_str(self, value: &str) -> Result<(), NotPlain> {
        self.string(value)
    }

    fn serialize_bytes(self, _: &[u8]) -> Result<(), NotPlain> {
        Err(NotPlain)
    }

    fn serialize_none(self) -> Result<(), NotPlain> {
        self.serialize_unit()
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), NotPlain> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), NotPlain> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }

    fn serialize_unit_struct(self, _: &'static str) -> Result<(), NotPlain> {
        self.serialize_unit()
    }

    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), NotPlain> {
        self.string(variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), NotPlain> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), NotPlain> {
        let mut object = Object::new(self.out);
        ser::SerializeMap::serialize_entry(&mut object, variant, value)?;
        ser::SerializeMap::end(object)
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Array<'a>, NotPlain> {
        self.out.push(b'[');
        Ok(Array {
            out: self.out,
            first: true,
        })
    }

    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, NotPlain> {
        Err(NotPlain)
    }

    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, NotPlain> {
        Err(NotPlain)
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, NotPlain> {
        Err(NotPlain)
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Object<'a>, NotPlain> {
        Ok(Object::new(self.out))
    }

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Object<'a>, NotPlain> {
        Ok(Object::new(self.out))
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, NotPlain> {
        Err(NotPlain)
    }

    fn collect_str<T: Display + ?Sized>(self, value: &T) -> Result<(), NotPlain> {
        self.string(&value.to_string())
    }
}

/// Writes an array's items in order, as they come.
struct Array<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl ser::SerializeSeq for Array<'_> {
    type Ok = ();
    type Error = NotPlain;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), NotPlain> {
        if !std::mem::take(&mut self.first) {
            self.out.push(b',');
        }
        value.serialize(Writer { out: self.out })
    }

    fn end(self) -> Result<(), NotPlain> {
        self.out.push(b']');
        Ok(())
    }
}

/// Writes an object's members as they come and, when the object ends, puts them in key order
/// if they are not already. A key must be a string of printable ASCII that JSON writes without
/// escapes: its written form then sorts as the string itself does.
///
/// Members go straight to `out` (no buffer per object or member): an object whose members
/// came sorted is done when it ends, and any other is copied once and written back sorted.
struct Object<'a> {
    out: &'a mut Vec<u8>,
    /// Where the object's `{` is in `out`.
    start: usize,
    /// Each member's key (inside its quotes) and whole text (`"key":value`), as ranges of `out`.
    members: Vec<(Range<usize>, Range<usize>)>,
    /// The member whose value comes next (`serialize_key` then `serialize_value`): where it
    /// starts and its key.
    pending: Option<(usize, Range<usize>)>,
}

impl<'a> Object<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        let start = out.len();
        out.push(b'{');
        Self {
            out,
            start,
            members: Vec::with_capacity(8),
            pending: None,
        }
    }

    /// Writes the separator and `"key":`, returning where the member starts and its key.
    fn key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(usize, Range<usize>), NotPlain> {
        if !self.members.is_empty() {
            self.out.push(b',');
        }
        let start = self.out.len();
        key.serialize(Writer { out: self.out })?;
        let written = match &self.out[start..] {
            [b'"', inner @ .., b'"'] if inner.iter().all(|&b| b.is_ascii() && b != b'\\') => {
                start + 1..self.out.len() - 1
            }
            _ => return Err(NotPlain),
        };
        self.out.push(b':');
        Ok((start, written))
    }

    fn value<T: Serialize + ?Sized>(
        &mut self,
        (start, key): (usize, Range<usize>),
        value: &T,
    ) -> Result<(), NotPlain> {
        value.serialize(Writer { out: self.out })?;
        self.members.push((key, start..self.out.len()));
        Ok(())
    }

    fn close(mut self) -> Result<(), NotPlain> {
        let out = &*self.out;
        let key = |member: &(Range<usize>, Range<usize>)| &out[member.0.clone()];
        if self
            .members
            .windows(2)
            .all(|pair| key(&pair[0]) < key(&pair[1]))
        {
            self.out.push(b'}');
            return Ok(());
        }
        self.members.sort_unstable_by(|a, b| key(a).cmp(key(b)));
        // JCS leaves duplicate names undefined; the crate refuses them, and so do we.
        if self
            .members
            .windows(2)
            .any(|pair| key(&pair[0]) == key(&pair[1]))
        {
            return Err(NotPlain);
        }
        let body = self.start + 1;
        let written = self.out.split_off(body);
        for (index, (_, member)) in self.members.iter().enumerate() {
            if index > 0 {
                self.out.push(b',');
            }
            self.out
                .extend_from_slice(&written[member.start - body..member.end - body]);
        }
        self.out.push(b'}');
        Ok(())
    }
}

impl ser::SerializeMap for Object<'_> {
    type Ok = ();
    type Error = NotPlain;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), NotPlain> {
        self.pending = Some(self.key(key)?);
        Ok(())
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), NotPlain> {
        let key = self.pending.take().ok_or(NotPlain)?;
        self.value(key, value)
    }

    fn end(self) -> Result<(), NotPlain> {
        self.close()
    }
}

impl ser::SerializeStruct for Object<'_> {
    type Ok = ();
    type Error = NotPlain;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), NotPlain> {
        let key = self.key(key)?;
        self.value(key, value)
    }

    fn end(self) -> Result<(), NotPlain> {
        self.close()
    }
}

#[cfg(test)]
mod tests;
