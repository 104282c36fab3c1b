//! Validates Checkout Session parameters against Stripe's published parameter tree (API version
//! 2026-09-30.endive, in fixtures/) and turns form strings into typed JSON, answering with the
//! errors Stripe gives: parameter_unknown, parameter_missing, parameter_invalid_integer, …

use std::sync::OnceLock;

use serde_json::{Map, Value};

use crate::error::StripeError;

/// The tree of `POST /v1/checkout/sessions`, from the parameter fixture.
pub fn checkout_session_create_tree() -> &'static Value {
    static PARAMS: OnceLock<Value> = OnceLock::new();
    PARAMS.get_or_init(|| {
        let doc: Value = serde_json::from_str(include_str!("../fixtures/checkout_session_create.params.json"))
            .expect("embedded parameter schema is valid JSON");
        Value::Object(
            [
                ("type".to_string(), Value::String("object".into())),
                ("properties".to_string(), doc["properties"].clone()),
            ]
            .into_iter()
            .collect(),
        )
    })
}

/// The API version the parameter trees describe; `x-since` / `x-removed-in` are read against it.
pub const API_VERSION: &str = "2026-09-30.endive";

/// Checks a parsed `POST /v1/checkout/sessions` body; returns it with integers and booleans typed.
/// Parameters whose effect the simulator implements, in Stripe's names with `[]` for any index
/// (`line_items[][quantity]`). A name covers everything under it (`metadata` covers
/// `metadata[pack_id]`). A non-empty value list restricts the values accepted: the ones asking for
/// what the simulator does anyway (`adaptive_pricing[enabled]` = `false`).
pub type Implemented = &'static [(&'static str, &'static [&'static str])];

/// Refuses a valid parameter whose effect the simulator does not implement, so that no test passes
/// on a setting that is silently ignored.
pub fn check_implemented(value: &Value, implemented: Implemented) -> Result<(), StripeError> {
    walk(value, "", "", implemented)
}

fn walk(value: &Value, param: &str, pattern: &str, implemented: Implemented) -> Result<(), StripeError> {
    if !pattern.is_empty() {
        let exact = implemented.iter().find(|(p, _)| *p == pattern);
        if let Some((_, values)) = exact {
            if values.is_empty() {
                return Ok(());
            }
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Bool(_) | Value::Number(_) => value.to_string(),
                _ => String::new(),
            };
            if values.contains(&text.as_str()) {
                return Ok(());
            }
            return Err(StripeError::invalid(
                param,
                format!(
                    "stripe-sim simulates {param}={} only (got {text:?}); Stripe accepts other values, but their effect is not implemented here.",
                    values.join(" or ")
                ),
            ));
        }
        if implemented.iter().any(|(p, _)| pattern.starts_with(&format!("{p}["))) {
            return Ok(());
        }
        let deeper = implemented.iter().any(|(p, _)| p.starts_with(&format!("{pattern}[")));
        if !deeper || !(value.is_object() || value.is_array()) {
            return Err(StripeError::invalid(
                param,
                format!(
                    "stripe-sim does not simulate {param}: Stripe accepts it, but its effect is not implemented here (see crates/stripe-sim/README.md)."
                ),
            ));
        }
    }
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                walk(v, &name(param, k), &name(pattern, k), implemented)?;
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                walk(v, &format!("{param}[{i}]"), &format!("{pattern}[]"), implemented)?;
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
pub fn checkout_session_create(body: &Value) -> Result<Value, StripeError> {
    check(body, checkout_session_create_tree(), "")
}

fn name(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}[{key}]")
    }
}

/// A property that does not exist in [`API_VERSION`] (removed before it, or added after it).
fn absent_in_version(schema: &Value) -> bool {
    let removed = schema.get("x-removed-in").and_then(Value::as_str).is_some_and(|v| v <= API_VERSION);
    let later = schema.get("x-since").and_then(Value::as_str).is_some_and(|v| v > API_VERSION);
    removed || later
}

fn shape(value: &Value) -> &'static str {
    match value {
        Value::Object(_) => "object",
        Value::Array(_) => "array",
        _ => "scalar",
    }
}

fn schema_shape(schema: &Value) -> &'static str {
    match schema.get("type").and_then(Value::as_str) {
        Some("object") => "object",
        Some("array") => "array",
        _ => "scalar",
    }
}

/// Validates `value` (a parsed form tree of strings) against `schema`, naming parameters as Stripe
/// does (`a[b][0][c]`); returns the value with integers, numbers and booleans typed.
///
/// Schema nodes: `type` (object, array, string, integer, number, boolean), `properties`,
/// `additionalProperties`, `items`, `required`, `enum`, `maxLength`, `emptyable` (`""` unsets),
/// `anyOf` (alternatives told apart by shape: `created=N` or `created[gte]=N`), `x-since` and
/// `x-removed-in` (API versions).
pub fn check(value: &Value, schema: &Value, param: &str) -> Result<Value, StripeError> {
    if let Value::String(s) = value {
        if s.is_empty() && schema.get("emptyable").and_then(Value::as_bool) == Some(true) {
            return Ok(Value::String(String::new()));
        }
    }
    if let Some(alternatives) = schema.get("anyOf").and_then(Value::as_array) {
        let chosen = alternatives.iter().find(|a| schema_shape(a) == shape(value)).or(alternatives.first());
        return check(value, chosen.unwrap_or(&Value::Null), param);
    }
    match schema.get("type").and_then(Value::as_str).unwrap_or("string") {
        "object" => {
            let Value::Object(map) = value else {
                return Err(StripeError::invalid(param, format!("Invalid object: {param} must be a dictionary")));
            };
            let props = schema.get("properties").and_then(Value::as_object);
            let extra = schema.get("additionalProperties").filter(|v| v.is_object());
            let mut out = Map::new();
            for (key, v) in map {
                let child = name(param, key);
                let sub = props.and_then(|p| p.get(key)).filter(|s| !absent_in_version(s)).or(extra);
                match sub {
                    Some(sub) => {
                        out.insert(key.clone(), check(v, sub, &child)?);
                    }
                    None => return Err(StripeError::unknown_parameter(&child)),
                }
            }
            for req in schema.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str)
            {
                if !map.contains_key(req) {
                    return Err(StripeError::missing_parameter(&name(param, req)));
                }
            }
            Ok(Value::Object(out))
        }
        "array" => {
            let Value::Array(items) = value else {
                return Err(StripeError::invalid(param, format!("Invalid array: {param} must be an array")));
            };
            let item_schema = schema.get("items").cloned().unwrap_or(Value::Null);
            items
                .iter()
                .enumerate()
                .map(|(i, v)| check(v, &item_schema, &format!("{param}[{i}]")))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array)
        }
        "integer" => {
            let text = value.as_str().unwrap_or_default();
            text.parse::<i64>()
                .map(Value::from)
                .map_err(|_| StripeError::coded(param, "parameter_invalid_integer", format!("Invalid integer: {text}")))
        }
        "number" => {
            let text = value.as_str().unwrap_or_default();
            text.parse::<f64>()
                .map(Value::from)
                .map_err(|_| StripeError::invalid(param, format!("Invalid decimal: {text}")))
        }
        "boolean" => match value.as_str() {
            Some("true") => Ok(Value::Bool(true)),
            Some("false") => Ok(Value::Bool(false)),
            other => Err(StripeError::invalid(param, format!("Invalid boolean: {}", other.unwrap_or("")))),
        },
        _ => {
            let Value::String(s) = value else {
                return Err(StripeError::invalid(param, format!("Invalid string: {param} must be a string")));
            };
            if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
                if !allowed.iter().any(|a| a.as_str() == Some(s)) {
                    let list: Vec<&str> = allowed.iter().filter_map(Value::as_str).collect();
                    return Err(StripeError::invalid(
                        param,
                        format!("Invalid {param}: must be one of {}", list.join(", ")),
                    ));
                }
            }
            if let Some(max) = schema.get("maxLength").and_then(Value::as_u64) {
                if s.chars().count() as u64 > max {
                    return Err(StripeError::invalid(
                        param,
                        format!("Invalid {param}: must be at most {max} characters"),
                    ));
                }
            }
            Ok(Value::String(s.clone()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::form;

    #[test]
    fn accepts_what_the_backend_sends_and_types_it() {
        let body = form::parse(b"mode=payment&line_items[0][quantity]=1&line_items[0][price_data][currency]=usd&line_items[0][price_data][unit_amount]=1299&line_items[0][price_data][product_data][name]=75+Mascot+credits&adaptive_pricing[enabled]=false&expires_at=1800000000&metadata[pack_id]=pack_75&payment_intent_data[metadata][pack_id]=pack_75").unwrap();
        let v = checkout_session_create(&body).unwrap();
        assert_eq!(v["line_items"][0]["price_data"]["unit_amount"], 1299);
        assert_eq!(v["line_items"][0]["quantity"], 1);
        assert_eq!(v["adaptive_pricing"]["enabled"], false);
        assert_eq!(v["expires_at"], 1_800_000_000);
    }

    #[test]
    fn errors_name_the_parameter() {
        let err = checkout_session_create(&form::parse(b"mode=payment&colour=red").unwrap()).unwrap_err();
        assert_eq!((err.code.as_deref(), err.param.as_deref()), (Some("parameter_unknown"), Some("colour")));
        assert_eq!(err.message, "Received unknown parameter: colour");
        let err =
            checkout_session_create(&form::parse(b"line_items[0][price_data][unit_amount]=5").unwrap()).unwrap_err();
        assert_eq!(
            (err.code.as_deref(), err.param.as_deref()),
            (Some("parameter_missing"), Some("line_items[0][price_data][currency]"))
        );
        let err = checkout_session_create(&form::parse(b"line_items[0][quantity]=two").unwrap()).unwrap_err();
        assert_eq!(err.code.as_deref(), Some("parameter_invalid_integer"));
        let err = checkout_session_create(&form::parse(b"mode=rent").unwrap()).unwrap_err();
        assert_eq!(err.param.as_deref(), Some("mode"));
        let err = checkout_session_create(&form::parse(b"metadata[a][b]=1").unwrap()).unwrap_err();
        assert_eq!(err.param.as_deref(), Some("metadata[a]"));
    }
}
