//! Typed access to ONNX node attributes and constant tensors, with errors that name the node.

use tract_onnx::pb::{AttributeProto, NodeProto, TensorProto};

use super::TreeError;

/// Dims and values of a constant tensor.
pub(crate) type DenseTensor = (Vec<usize>, Vec<f64>);

/// ONNX `TensorProto.DataType` codes we read.
const FLOAT: i32 = 1;
const INT32: i32 = 6;
const INT64: i32 = 7;
const DOUBLE: i32 = 11;

pub(crate) struct Attrs<'a> {
    node: &'a NodeProto,
}

impl<'a> Attrs<'a> {
    pub(crate) fn new(node: &'a NodeProto) -> Self {
        Attrs { node }
    }

    fn get(&self, name: &str) -> Option<&'a AttributeProto> {
        self.node.attribute.iter().find(|a| a.name == name)
    }

    pub(crate) fn node_name(&self) -> String {
        describe(self.node)
    }

    fn err(&self, attr: &str, msg: impl Into<String>) -> TreeError {
        TreeError::Attribute {
            node: self.node_name(),
            attr: attr.to_string(),
            msg: msg.into(),
        }
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub(crate) fn ints(&self, name: &str) -> Vec<i64> {
        self.get(name).map(|a| a.ints.clone()).unwrap_or_default()
    }

    pub(crate) fn floats(&self, name: &str) -> Vec<f32> {
        self.get(name).map(|a| a.floats.clone()).unwrap_or_default()
    }

    pub(crate) fn int(&self, name: &str) -> Option<i64> {
        self.get(name).map(|a| a.i)
    }

    pub(crate) fn float(&self, name: &str) -> Option<f32> {
        self.get(name).map(|a| a.f)
    }

    pub(crate) fn string(&self, name: &str) -> Result<Option<String>, TreeError> {
        match self.get(name) {
            None => Ok(None),
            Some(a) => String::from_utf8(a.s.clone())
                .map(Some)
                .map_err(|_| self.err(name, "not valid UTF-8")),
        }
    }

    pub(crate) fn strings(&self, name: &str) -> Result<Vec<String>, TreeError> {
        let Some(a) = self.get(name) else {
            return Ok(Vec::new());
        };
        a.strings
            .iter()
            .map(|s| String::from_utf8(s.clone()).map_err(|_| self.err(name, "not valid UTF-8")))
            .collect()
    }

    /// `name` as f32 list, or `name_as_tensor` as f64 list; `(values, is_double)`.
    /// Both present is refused like onnxruntime does.
    pub(crate) fn floats_or_tensor(&self, name: &str) -> Result<(Vec<f64>, bool), TreeError> {
        let tensor_name = format!("{name}_as_tensor");
        let plain = self.get(name).filter(|a| !a.floats.is_empty());
        let tensor = self.get(&tensor_name);
        match (plain, tensor) {
            (Some(_), Some(_)) => {
                Err(self.err(name, format!("both {name} and {tensor_name} are set")))
            }
            (Some(a), None) => Ok((a.floats.iter().map(|&v| f64::from(v)).collect(), false)),
            (None, Some(a)) => {
                let t =
                    a.t.as_ref()
                        .ok_or_else(|| self.err(&tensor_name, "attribute holds no tensor"))?;
                let (_, values) = tensor_f64(t).map_err(|m| self.err(&tensor_name, m))?;
                let double = t.data_type == DOUBLE;
                Ok((values, double))
            }
            (None, None) => Ok((Vec::new(), false)),
        }
    }

    pub(crate) fn tensor(&self, name: &str) -> Result<Option<DenseTensor>, TreeError> {
        match self.get(name) {
            None => Ok(None),
            Some(a) => {
                let t =
                    a.t.as_ref()
                        .ok_or_else(|| self.err(name, "attribute holds no tensor"))?;
                tensor_f64(t).map(Some).map_err(|m| self.err(name, m))
            }
        }
    }
}

pub(crate) fn describe(node: &NodeProto) -> String {
    if node.name.is_empty() {
        format!(
            "{} (output {:?})",
            node.op_type,
            node.output.first().map(String::as_str).unwrap_or("")
        )
    } else {
        format!("{} {:?}", node.op_type, node.name)
    }
}

/// Dims and values of a numeric tensor, widened to f64 (exact for every type we accept).
pub(crate) fn tensor_f64(t: &TensorProto) -> Result<(Vec<usize>, Vec<f64>), String> {
    if t.data_location == Some(1) || !t.external_data.is_empty() {
        return Err("external tensor data is not supported".into());
    }
    let dims = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("negative dimension {d}")))
        .collect::<Result<Vec<_>, _>>()?;
    let expected: usize = dims.iter().product();
    let raw = &t.raw_data;
    let values: Vec<f64> = match t.data_type {
        FLOAT if !raw.is_empty() => le_chunks::<4>(raw)?
            .map(|b| f64::from(f32::from_le_bytes(b)))
            .collect(),
        FLOAT => t.float_data.iter().map(|&v| f64::from(v)).collect(),
        DOUBLE if !raw.is_empty() => le_chunks::<8>(raw)?.map(f64::from_le_bytes).collect(),
        DOUBLE => t.double_data.clone(),
        INT64 if !raw.is_empty() => le_chunks::<8>(raw)?
            .map(|b| i64::from_le_bytes(b) as f64)
            .collect(),
        INT64 => t.int64_data.iter().map(|&v| v as f64).collect(),
        INT32 if !raw.is_empty() => le_chunks::<4>(raw)?
            .map(|b| f64::from(i32::from_le_bytes(b)))
            .collect(),
        INT32 => t.int32_data.iter().map(|&v| f64::from(v)).collect(),
        other => return Err(format!("tensor data type {other} is not supported")),
    };
    if values.len() != expected {
        return Err(format!(
            "tensor has {} values but dims {:?}",
            values.len(),
            dims
        ));
    }
    Ok((dims, values))
}

fn le_chunks<const N: usize>(raw: &[u8]) -> Result<impl Iterator<Item = [u8; N]> + '_, String> {
    if !raw.len().is_multiple_of(N) {
        return Err(format!(
            "raw_data length {} is not a multiple of {N}",
            raw.len()
        ));
    }
    Ok(raw.chunks_exact(N).map(|c| {
        let mut b = [0u8; N];
        b.copy_from_slice(c);
        b
    }))
}
