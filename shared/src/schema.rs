//! JSON Schemas (feature `schema`) of the types whose serde representation
//! is written by hand: an architecture is a string in JSON (the form in
//! files, CLIs and tables) but op ids in postcard, so a derived schema of
//! the Rust struct would describe neither. These describe the JSON form,
//! which is what the host's OpenAPI document promises.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

use crate::fbnet::{FBNET_LAYERS, FbnetArch};
use crate::nb201::{NB201_EDGES, Nb201Arch, Nb201Op};

/// Pattern of the canonical NB201 string: three `|...|` node groups joined
/// by `+`, node `j` holding `j` edges `OP~i` for inputs `i = 0..j`.
fn nb201_pattern() -> String {
    let ops: Vec<&str> = [
        Nb201Op::None,
        Nb201Op::SkipConnect,
        Nb201Op::NorConv1x1,
        Nb201Op::NorConv3x3,
        Nb201Op::AvgPool3x3,
    ]
    .iter()
    .map(|op| op.name())
    .collect();
    let op = format!("({})", ops.join("|"));
    let groups: Vec<String> = (1..=3)
        .map(|node| {
            let edges: Vec<String> = (0..node).map(|i| format!("{op}~{i}")).collect();
            format!("\\|{}\\|", edges.join("\\|"))
        })
        .collect();
    format!("^{}$", groups.join("\\+"))
}

impl JsonSchema for Nb201Arch {
    fn schema_name() -> Cow<'static, str> {
        "Nb201Arch".into()
    }

    fn schema_id() -> Cow<'static, str> {
        "nasflat_shared::nb201::Nb201Arch".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": format!(
                "A NASBench-201 cell as its canonical string ({NB201_EDGES} edges, ops none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3). Postcard carries the {NB201_EDGES} op ids instead."
            ),
            "type": "string",
            "pattern": nb201_pattern(),
            "examples": ["|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|"]
        })
    }
}

impl JsonSchema for FbnetArch {
    fn schema_name() -> Cow<'static, str> {
        "FbnetArch".into()
    }

    fn schema_id() -> Cow<'static, str> {
        "nasflat_shared::fbnet::FbnetArch".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": format!(
                "An FBNet architecture as its key: the block id (0..=8) of each of the {FBNET_LAYERS} searchable layers, joined by `_`. Postcard carries the {FBNET_LAYERS} ids instead."
            ),
            "type": "string",
            "pattern": format!("^[0-8](_[0-8]){{{}}}$", FBNET_LAYERS - 1),
            "examples": ["0_0_0_0_0_0_0_0_0_0_0_0_0_0_0_0_0_0_0_0_0_0"]
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::Arch;

    /// An `Arch` is `{"nb201": "<string>"}` or `{"fbnet": "<string>"}` in
    /// JSON, and its schema says so (the host's OpenAPI tests validate real
    /// serde output against it with a JSON Schema validator).
    #[test]
    fn arch_schema_is_a_tagged_string() {
        let schema = serde_json::to_value(schemars::schema_for!(Arch)).unwrap_or_default();
        let variants = schema["oneOf"].as_array().cloned().unwrap_or_default();
        assert_eq!(variants.len(), 2, "{schema}");
        for (v, (tag, def)) in variants
            .iter()
            .zip([("nb201", "Nb201Arch"), ("fbnet", "FbnetArch")])
        {
            assert_eq!(v["required"], serde_json::json!([tag]), "{v}");
            assert_eq!(
                v["properties"][tag]["$ref"],
                format!("#/$defs/{def}"),
                "{v}"
            );
            assert_eq!(schema["$defs"][def]["type"], "string", "{schema}");
        }
        let json = serde_json::to_value(Arch::from_index(crate::SearchSpace::Nb201, 0).ok())
            .unwrap_or_default();
        assert!(json["nb201"].is_string(), "{json}");
    }
}
