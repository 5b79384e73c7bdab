//! Checks, while an upload streams in, that its bytes are an ONNX model:
//! a protobuf `ModelProto` whose every field is well formed and ends inside
//! its parent, with an `ir_version`, at least one `opset_import` and a
//! `graph` that holds nodes and outputs. The check walks the protobuf wire
//! format itself (the model's first two message levels) instead of decoding
//! `ModelProto`: a decoder needs the whole file in memory, and the service
//! must not buffer a 250 MB upload (nor link tract or prost for it). It does
//! not check operators or shapes; the agent's runtime does, and reports a
//! model it cannot load as an invalid result.

use thiserror::Error;

/// Why the bytes are not an ONNX model.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum OnnxError {
    /// The protobuf wire format is broken at `offset`.
    #[error("not an ONNX model: malformed protobuf at byte {offset}: {reason}")]
    Wire { offset: u64, reason: &'static str },
    /// Well-formed protobuf, but not a usable `ModelProto`.
    #[error("not an ONNX model: {0}")]
    Model(&'static str),
}

/// Which message the walker is inside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    /// `ModelProto`.
    Model,
    /// `ModelProto.graph` (`GraphProto`).
    Graph,
}

/// Highest `ir_version` accepted (ONNX is at 11; room for new releases).
const MAX_IR_VERSION: u64 = 64;

/// Incremental ONNX check: [`OnnxCheck::feed`] each piece of the upload,
/// then [`OnnxCheck::finish`].
#[derive(Debug)]
pub struct OnnxCheck {
    /// Bytes consumed so far.
    offset: u64,
    /// Open messages below the top one, with the offset each ends at.
    open: Vec<(Level, u64)>,
    /// Bytes of a field header (tag, then a varint value or length) not yet complete.
    header: Vec<u8>,
    /// Payload bytes of the current field still to skip.
    skip: u64,
    ir_version: Option<u64>,
    opsets: u32,
    graphs: u32,
    nodes: u64,
    outputs: u64,
}

impl Default for OnnxCheck {
    fn default() -> Self {
        OnnxCheck::new()
    }
}

impl OnnxCheck {
    /// A check at the start of a file.
    pub fn new() -> OnnxCheck {
        OnnxCheck {
            offset: 0,
            open: Vec::new(),
            header: Vec::with_capacity(20),
            skip: 0,
            ir_version: None,
            opsets: 0,
            graphs: 0,
            nodes: 0,
            outputs: 0,
        }
    }

    /// Consumes the next bytes of the file.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), OnnxError> {
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = usize::try_from(self.skip)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                bytes = &bytes[n..];
                self.skip -= n as u64;
                self.offset += n as u64;
                if self.skip == 0 {
                    self.close_ended()?;
                }
                continue;
            }
            self.header.push(bytes[0]);
            bytes = &bytes[1..];
            self.offset += 1;
            self.field_header()?;
        }
        Ok(())
    }

    /// Checks the whole file was a complete model.
    pub fn finish(&self) -> Result<(), OnnxError> {
        if self.offset == 0 {
            return Err(OnnxError::Model("the file is empty"));
        }
        if !self.header.is_empty() || self.skip > 0 || !self.open.is_empty() {
            return Err(self.wire("the file ends inside a field"));
        }
        match self.ir_version {
            None => return Err(OnnxError::Model("no ir_version")),
            Some(v) if v == 0 || v > MAX_IR_VERSION => {
                return Err(OnnxError::Model("ir_version out of range"));
            }
            Some(_) => {}
        }
        if self.opsets == 0 {
            return Err(OnnxError::Model("no opset_import"));
        }
        match self.graphs {
            0 => return Err(OnnxError::Model("no graph")),
            1 => {}
            _ => return Err(OnnxError::Model("more than one graph")),
        }
        if self.nodes == 0 {
            return Err(OnnxError::Model("the graph has no nodes"));
        }
        if self.outputs == 0 {
            return Err(OnnxError::Model("the graph has no outputs"));
        }
        Ok(())
    }

    fn wire(&self, reason: &'static str) -> OnnxError {
        OnnxError::Wire {
            offset: self.offset,
            reason,
        }
    }

    fn level(&self) -> Level {
        self.open.last().map_or(Level::Model, |(l, _)| *l)
    }

    /// Acts on `header` once it holds a whole tag and its varint value or
    /// length; waits for more bytes otherwise.
    fn field_header(&mut self) -> Result<(), OnnxError> {
        let Some((tag, used)) = varint(&self.header).map_err(|r| self.wire(r))? else {
            return Ok(());
        };
        let (field, wire) = (tag >> 3, tag & 7);
        if field == 0 {
            return Err(self.wire("field number 0"));
        }
        let value = match wire {
            0 | 2 => match varint(&self.header[used..]).map_err(|r| self.wire(r))? {
                Some((v, _)) => v,
                None => return Ok(()),
            },
            1 => 8,
            5 => 4,
            _ => return Err(self.wire("group or unknown wire type")),
        };
        self.header.clear();
        self.field(field, wire, value)
    }

    /// A complete field header: records what the model needs and skips or
    /// enters the payload.
    fn field(&mut self, field: u64, wire: u64, value: u64) -> Result<(), OnnxError> {
        let end = self
            .offset
            .saturating_add(if wire == 0 { 0 } else { value });
        if let Some(&(_, parent_end)) = self.open.last()
            && end > parent_end
        {
            return Err(self.wire("a field runs past the end of its message"));
        }
        match (self.level(), field, wire) {
            (Level::Model, 1, 0) => self.ir_version = Some(value),
            (Level::Model, 1, _) => return Err(self.wire("ir_version is not a varint")),
            (Level::Model, 7, 2) => {
                self.graphs += 1;
                self.open.push((Level::Graph, end));
                return self.close_ended();
            }
            (Level::Model, 7, _) => return Err(self.wire("graph is not a message")),
            (Level::Model, 8, 2) => self.opsets += 1,
            (Level::Graph, 1, 2) => self.nodes += 1,
            (Level::Graph, 12, 2) => self.outputs += 1,
            _ => {}
        }
        if wire == 0 {
            return self.close_ended();
        }
        self.skip = value;
        if value == 0 {
            self.close_ended()?;
        }
        Ok(())
    }

    /// Leaves every open message that ends here.
    fn close_ended(&mut self) -> Result<(), OnnxError> {
        while let Some(&(_, end)) = self.open.last() {
            if end == self.offset {
                self.open.pop();
            } else if end < self.offset {
                return Err(self.wire("a field runs past the end of its message"));
            } else {
                break;
            }
        }
        Ok(())
    }
}

/// A varint at the start of `bytes` and its length; `None` while incomplete.
fn varint(bytes: &[u8]) -> Result<Option<(u64, usize)>, &'static str> {
    let mut value = 0u64;
    for (i, b) in bytes.iter().enumerate() {
        if i == 10 {
            return Err("varint longer than 10 bytes");
        }
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    if bytes.len() >= 10 {
        return Err("varint longer than 10 bytes");
    }
    Ok(None)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn tag(field: u64, wire: u64) -> Vec<u8> {
        enc(field << 3 | wire)
    }

    fn enc(mut v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return out;
            }
            out.push(b | 0x80);
        }
    }

    fn message(field: u64, body: &[u8]) -> Vec<u8> {
        let mut out = tag(field, 2);
        out.extend(enc(body.len() as u64));
        out.extend_from_slice(body);
        out
    }

    /// ir_version 8, opset 17, a graph with one node and one output.
    fn model() -> Vec<u8> {
        let mut graph = message(1, &message(4, b"Relu"));
        graph.extend(message(2, b"g"));
        graph.extend(message(12, &message(1, b"y")));
        let mut m = tag(1, 0);
        m.extend(enc(8));
        m.extend(message(2, b"test"));
        m.extend(message(7, &graph));
        let mut opset = tag(2, 0);
        opset.extend(enc(17));
        m.extend(message(8, &opset));
        m
    }

    fn check_in_pieces(bytes: &[u8], piece: usize) -> Result<(), OnnxError> {
        let mut c = OnnxCheck::new();
        for p in bytes.chunks(piece) {
            c.feed(p)?;
        }
        c.finish()
    }

    #[test]
    fn a_model_passes_however_it_is_split() {
        let m = model();
        for piece in [1, 2, 3, 7, m.len()] {
            assert_eq!(check_in_pieces(&m, piece), Ok(()), "pieces of {piece}");
        }
    }

    #[test]
    fn broken_or_incomplete_models_are_refused() {
        let m = model();
        let truncated = &m[..m.len() - 1];
        assert!(matches!(
            check_in_pieces(truncated, 5),
            Err(OnnxError::Wire { .. })
        ));
        let mut trailing = m.clone();
        trailing.push(0x08);
        assert!(check_in_pieces(&trailing, 4).is_err());
        // Starts like a model (0x08) but is text.
        assert!(check_in_pieces(b"\x08hello, this is not a model", 4).is_err());
        assert_eq!(
            check_in_pieces(b"", 1),
            Err(OnnxError::Model("the file is empty"))
        );
        let mut no_graph = tag(1, 0);
        no_graph.extend(enc(8));
        no_graph.extend(message(8, &[0x10, 17]));
        assert_eq!(
            check_in_pieces(&no_graph, 3),
            Err(OnnxError::Model("no graph"))
        );
        let mut group = m.clone();
        group.extend(tag(9, 3));
        assert!(matches!(
            check_in_pieces(&group, 2),
            Err(OnnxError::Wire { .. })
        ));
        // A nested field claiming more bytes than its graph holds.
        let mut graph = message(1, b"x");
        graph.extend(tag(12, 2));
        graph.extend(enc(50));
        let mut overrun = tag(1, 0);
        overrun.extend(enc(8));
        overrun.extend(message(7, &graph));
        overrun.extend(vec![0u8; 60]);
        assert!(matches!(
            check_in_pieces(&overrun, 8),
            Err(OnnxError::Wire { .. })
        ));
    }
}
