//! ONNX models of NASBench-201 and FBNet architectures, for on-device latency
//! measurement (paper §3: the latencies a few-shot predictor transfers to a
//! new device have to be measured there, on the same networks the benchmark
//! tables timed).
//!
//! Why generate instead of shipping files: 15,625 + 5,000 models with weights
//! are gigabytes, while a model is rebuilt from its arch string in about a
//! millisecond, deterministically from a seed. The builders emit plain
//! opset-17 graphs (Conv, BatchNormalization, Relu, AveragePool, Add, ...)
//! that tract, onnxruntime and `onnx.checker` accept.
//!
//! [`cost`] walks a finished graph and counts parameters and FLOPs; the
//! counts equal the published NB201 and FBNet tables exactly, which is how
//! the tests prove every graph has the reference network's structure.
//!
//! ```
//! use nasflat_onnx::{FlopsConvention, Nb201Config, WeightInit, model_cost, nb201_model};
//! use nasflat_shared::Nb201Arch;
//!
//! let arch = Nb201Arch::from_index(0)?;
//! let config = Nb201Config { weights: WeightInit::Random { seed: 1 }, ..Nb201Config::default() };
//! let model = nb201_model(&arch, &config)?;
//! let cost = model_cost(&model)?;
//! assert_eq!(cost.params, 129_306);
//! assert_eq!(cost.flops(FlopsConvention::TensorWatch), 17_958_592);
//! assert_eq!(cost.output_shape, vec![1, 10]);
//! let bytes = nasflat_onnx::encode(&model);
//! assert!(bytes.len() > 4 * 129_306);
//! # Ok::<(), nasflat_onnx::OnnxError>(())
//! ```

pub mod cost;
pub mod error;
pub mod fbnet;
mod layers;
pub mod nb201;
pub mod op_cost;
mod proto;
mod shapes;

pub use cost::{FlopsConvention, ModelCost, NodeCost, OpCost, model_cost};
pub use error::{OnnxError, Result};
pub use fbnet::{FbnetConfig, fbnet_model};
pub use nb201::{Nb201Config, Nb201Dataset, nb201_model};
pub use proto::{IR_VERSION, OPSET_VERSION, WeightInit};
pub use tract_onnx::pb::ModelProto;

/// Serialises a model to the bytes of a `.onnx` file.
pub fn encode(model: &ModelProto) -> Vec<u8> {
    prost::Message::encode_to_vec(model)
}
