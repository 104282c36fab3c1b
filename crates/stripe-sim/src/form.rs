//! Stripe's form encoding: `a[b][0][c]=v`, `expand[]=x`, percent-encoded, into a JSON tree of
//! strings (types are applied later by the schema).

use serde_json::{Map, Value};

/// Parses a form body (or query string) into nested objects/arrays of strings.
pub fn parse(body: &[u8]) -> Result<Value, String> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_bytes(body).map_err(|e| format!("invalid form body: {e}"))?;
    let mut root = Value::Object(Map::new());
    for (key, value) in pairs {
        let path = split_key(&key).ok_or_else(|| format!("Invalid parameter name: {key}"))?;
        insert(&mut root, &path, value, &key)?;
    }
    Ok(arrays_from_indices(root))
}

/// `a[b][0]` → ["a", "b", "0"]; `a[]` → ["a", ""].
fn split_key(key: &str) -> Option<Vec<String>> {
    let (head, mut rest) = match key.find('[') {
        Some(i) => (&key[..i], &key[i..]),
        None => (key, ""),
    };
    if head.is_empty() {
        return None;
    }
    let mut out = vec![head.to_string()];
    while !rest.is_empty() {
        let close = rest.find(']')?;
        if !rest.starts_with('[') {
            return None;
        }
        out.push(rest[1..close].to_string());
        rest = &rest[close + 1..];
    }
    Some(out)
}

fn insert(node: &mut Value, path: &[String], value: String, key: &str) -> Result<(), String> {
    let Value::Object(map) = node else { return Err(format!("Invalid parameter structure at {key}")) };
    let segment = if path[0].is_empty() { map.len().to_string() } else { path[0].clone() };
    if path.len() == 1 {
        // A repeated plain key: Stripe keeps the last one.
        map.insert(segment, Value::String(value));
        return Ok(());
    }
    let child = map.entry(segment).or_insert_with(|| Value::Object(Map::new()));
    if !child.is_object() {
        return Err(format!("Invalid parameter structure at {key}"));
    }
    insert(child, &path[1..], value, key)
}

/// Objects whose keys are all indices become arrays (ordered by index).
fn arrays_from_indices(node: Value) -> Value {
    match node {
        Value::Object(map) => {
            let all_indices = !map.is_empty() && map.keys().all(|k| k.parse::<usize>().is_ok());
            let converted: Map<String, Value> = map.into_iter().map(|(k, v)| (k, arrays_from_indices(v))).collect();
            if all_indices {
                let mut items: Vec<(usize, Value)> =
                    converted.into_iter().map(|(k, v)| (k.parse::<usize>().unwrap_or(0), v)).collect();
                items.sort_by_key(|(i, _)| *i);
                Value::Array(items.into_iter().map(|(_, v)| v).collect())
            } else {
                Value::Object(converted)
            }
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_objects_and_arrays() {
        let v = parse(b"mode=payment&line_items[0][quantity]=1&line_items[0][price_data][product_data][name]=75%20Mascot+credits&metadata[user_id]=u1&expand[]=a&expand[]=b").unwrap();
        assert_eq!(
            v,
            json!({"mode": "payment", "line_items": [{"quantity": "1", "price_data": {"product_data": {"name": "75 Mascot credits"}}}],
                   "metadata": {"user_id": "u1"}, "expand": ["a", "b"]})
        );
    }

    #[test]
    fn indices_order_and_percent_encoded_brackets() {
        let v = parse(b"items%5B1%5D=b&items%5B0%5D=a&success_url=http%3A%2F%2Fx%2Fs%3Fid%3D%7BCHECKOUT_SESSION_ID%7D")
            .unwrap();
        assert_eq!(v, json!({"items": ["a", "b"], "success_url": "http://x/s?id={CHECKOUT_SESSION_ID}"}));
    }

    #[test]
    fn bad_structures_are_errors_not_panics() {
        assert!(parse(b"a[b=1").is_err());
        assert!(parse(b"[x]=1").is_err());
        assert!(parse(b"a=1&a[b]=2").is_err());
        assert!(parse(b"a]b[=1").is_err());
        assert_eq!(parse(b"").unwrap(), json!({}));
    }
}
