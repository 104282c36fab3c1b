//! The one table of what the simulator serves: for every endpoint, its method and path, Stripe's
//! parameter tree (body or query) and where that tree was taken from, the parameters whose effect
//! is implemented, and the handler. The router dispatches only through this table, every request
//! is validated against its entry before the handler runs, and README.md's endpoint list is
//! rendered from it (a test keeps the two equal), so an endpoint cannot be added without its
//! parameters being validated and documented.

use std::sync::OnceLock;

use serde_json::{json, Value};

use crate::{
    core,
    error::StripeError,
    schema::{self, Implemented},
    selling, StripeSim,
};

/// What a handler gets: the path's `{id}`, the validated (typed) parameters, and for POSTs the
/// request's `req_…` id and `Idempotency-Key` (events it causes carry them).
pub struct Call {
    pub id: String,
    pub params: Value,
    pub request: Option<(String, Option<String>)>,
}

pub struct Endpoint {
    pub method: &'static str,
    /// `{id}` stands for one path segment.
    pub path: &'static str,
    /// Where `params` comes from.
    pub source: &'static str,
    pub params: fn() -> &'static Value,
    pub implemented: Implemented,
    /// What `expand[]` may name (`data.` prefixed on lists); deeper steps must lead to an object
    /// the simulator holds.
    pub expandable: &'static [&'static str],
    pub run: fn(&StripeSim, &Call) -> Result<Value, StripeError>,
}

const CHECKOUT_FIXTURE: &str = "`fixtures/checkout_session_create.params.json`: Stripe's OpenAPI description \
     (`stripe/openapi` `latest/openapi.spec3.json` @ 18fa2cc, 2026-09-30.endive), the same tree as \
     `shared/fixtures/stripe/checkout_session_create.subset.json`";

const COUPON_SOURCE: &str = "Stripe's API reference, Coupons (`POST /v1/coupons`, `GET /v1/coupons/{id}`), \
     API 2026-09-30.endive, written out by hand in src/endpoints.rs";

const PROMOTION_SOURCE: &str = "Stripe's API reference, Promotion codes, API 2026-09-30.endive (since \
     2025-09-30.clover a code names its coupon through `promotion[type]=coupon`, `promotion[coupon]`; \
     the former top-level `coupon` is refused as unknown), written out by hand in src/endpoints.rs";

pub static ENDPOINTS: &[Endpoint] = &[
    Endpoint {
        method: "POST",
        path: "/v1/checkout/sessions",
        source: CHECKOUT_FIXTURE,
        params: schema::checkout_session_create_tree,
        implemented: &[
            ("mode", &["payment"]),
            ("line_items[][quantity]", &[]),
            ("line_items[][price_data][currency]", &[]),
            ("line_items[][price_data][unit_amount]", &[]),
            ("line_items[][price_data][product_data][name]", &[]),
            ("line_items[][price_data][product_data][description]", &[]),
            // The rate table (fixtures/tax_rates.json) holds rates for this one tax code.
            ("line_items[][price_data][product_data][tax_code]", &["txcd_10000000"]),
            ("line_items[][price_data][tax_behavior]", &["exclusive", "inclusive"]),
            ("automatic_tax[enabled]", &[]),
            ("tax_id_collection[enabled]", &[]),
            ("invoice_creation[enabled]", &[]),
            ("allow_promotion_codes", &[]),
            ("discounts[][coupon]", &[]),
            ("discounts[][promotion_code]", &[]),
            ("success_url", &[]),
            ("cancel_url", &[]),
            ("client_reference_id", &[]),
            ("customer_email", &[]),
            ("metadata", &[]),
            ("payment_intent_data[metadata]", &[]),
            ("payment_intent_data[description]", &[]),
            ("adaptive_pricing[enabled]", &["false"]),
            ("expires_at", &[]),
            ("expand", &[]),
        ],
        expandable: &["payment_intent"],
        run: |sim, call| core::create_session(sim, &call.params),
    },
    Endpoint {
        method: "GET",
        path: "/v1/checkout/sessions",
        source: "npm `stripe@23.1.0` `esm/resources/Checkout/Sessions.d.ts` `Checkout.SessionListParams` \
                 (with `PaginationParams`, `RangeQueryParam` from `esm/shared.d.ts`)",
        params: session_list,
        implemented: &[
            ("payment_intent", &[]),
            ("status", &[]),
            ("created", &[]),
            ("limit", &[]),
            ("starting_after", &[]),
            ("ending_before", &[]),
            ("expand", &[]),
        ],
        expandable: &["data.payment_intent"],
        run: list_sessions,
    },
    Endpoint {
        method: "GET",
        path: "/v1/checkout/sessions/{id}",
        source: "npm `stripe@23.1.0` `esm/resources/Checkout/Sessions.d.ts` `Checkout.SessionRetrieveParams`",
        params: expand_only,
        implemented: &[("expand", &[])],
        expandable: &["payment_intent"],
        run: |sim, call| sim.session(&call.id).ok_or_else(|| StripeError::not_found("checkout.session", &call.id)),
    },
    Endpoint {
        method: "POST",
        path: "/v1/checkout/sessions/{id}/expire",
        source: "npm `stripe@23.1.0` `esm/resources/Checkout/Sessions.d.ts` `Checkout.SessionExpireParams`",
        params: expand_only,
        implemented: &[("expand", &[])],
        expandable: &["payment_intent"],
        run: |sim, call| core::expire(sim, &call.id, call.request.clone()),
    },
    Endpoint {
        method: "GET",
        path: "/v1/checkout/sessions/{id}/line_items",
        source: "npm `stripe@23.1.0` `esm/resources/Checkout/Sessions.d.ts` `Checkout.SessionListLineItemsParams`",
        params: paginated_expand,
        implemented: &[("limit", &[]), ("starting_after", &[]), ("ending_before", &[]), ("expand", &[])],
        expandable: &[],
        run: core::line_items,
    },
    Endpoint {
        method: "POST",
        path: "/v1/refunds",
        source: "npm `stripe@23.1.0` `esm/resources/Refunds.d.ts` `RefundCreateParams`",
        params: refund_create,
        implemented: &[
            ("payment_intent", &[]),
            ("charge", &[]),
            ("amount", &[]),
            ("reason", &[]),
            ("metadata", &[]),
            ("expand", &[]),
            // No Connect in the simulator: not reversing a transfer or an application fee is what it does.
            ("reverse_transfer", &["false"]),
            ("refund_application_fee", &["false"]),
        ],
        expandable: &["charge", "payment_intent"],
        run: |sim, call| core::refund(sim, &call.params, call.request.clone()),
    },
    Endpoint {
        method: "GET",
        path: "/v1/refunds",
        source: "npm `stripe@23.1.0` `esm/resources/Refunds.d.ts` `RefundListParams`",
        params: refund_list,
        implemented: &[
            ("charge", &[]),
            ("payment_intent", &[]),
            ("created", &[]),
            ("limit", &[]),
            ("starting_after", &[]),
            ("ending_before", &[]),
            ("expand", &[]),
        ],
        expandable: &["data.charge", "data.payment_intent"],
        run: list_refunds,
    },
    Endpoint {
        method: "GET",
        path: "/v1/refunds/{id}",
        source: "npm `stripe@23.1.0` `esm/resources/Refunds.d.ts` `RefundRetrieveParams`",
        params: expand_only,
        implemented: &[("expand", &[])],
        expandable: &["charge", "payment_intent"],
        run: |sim, call| {
            sim.lock().refunds.get(&call.id).cloned().ok_or_else(|| StripeError::not_found("refund", &call.id))
        },
    },
    Endpoint {
        method: "GET",
        path: "/v1/events",
        source: "npm `stripe@23.1.0` `esm/resources/Events.d.ts` `EventListParams`",
        params: event_list,
        implemented: &[
            ("type", &[]),
            ("types", &[]),
            ("created", &[]),
            ("limit", &[]),
            ("starting_after", &[]),
            ("ending_before", &[]),
            ("expand", &[]),
        ],
        expandable: &[],
        run: list_events,
    },
    Endpoint {
        method: "GET",
        path: "/v1/events/{id}",
        source: "npm `stripe@23.1.0` `esm/resources/Events.d.ts` `EventRetrieveParams`",
        params: expand_only,
        implemented: &[("expand", &[])],
        expandable: &[],
        run: |sim, call| {
            sim.events()
                .into_iter()
                .find(|e| e["id"] == call.id.as_str())
                .ok_or_else(|| StripeError::not_found("event", &call.id))
        },
    },
    Endpoint {
        method: "GET",
        path: "/v1/payment_intents/{id}",
        source: "npm `stripe@23.1.0` `esm/resources/PaymentIntents.d.ts` `PaymentIntentRetrieveParams`",
        params: payment_intent_retrieve,
        implemented: &[("expand", &[])],
        expandable: &["latest_charge"],
        run: |sim, call| {
            sim.lock()
                .payment_intents
                .get(&call.id)
                .cloned()
                .ok_or_else(|| StripeError::not_found("payment_intent", &call.id))
        },
    },
    Endpoint {
        method: "GET",
        path: "/v1/charges/{id}",
        source: "npm `stripe@23.1.0` `esm/resources/Charges.d.ts` `ChargeRetrieveParams`",
        params: expand_only,
        implemented: &[("expand", &[])],
        expandable: &["payment_intent"],
        run: |sim, call| {
            sim.lock().charges.get(&call.id).cloned().ok_or_else(|| StripeError::not_found("charge", &call.id))
        },
    },
    Endpoint {
        method: "GET",
        path: "/v1/invoices/{id}",
        source: "npm `stripe@23.1.0` `esm/resources/Invoices.d.ts` `InvoiceRetrieveParams`",
        params: expand_only,
        implemented: &[("expand", &[])],
        expandable: &[],
        run: |sim, call| {
            sim.lock().invoices.get(&call.id).cloned().ok_or_else(|| StripeError::not_found("invoice", &call.id))
        },
    },
    Endpoint {
        method: "POST",
        path: "/v1/coupons",
        source: COUPON_SOURCE,
        params: coupon_create,
        implemented: &[
            ("percent_off", &[]),
            ("amount_off", &[]),
            ("currency", &[]),
            // A one-time purchase is discounted once whatever the duration; only `once` is simulated.
            ("duration", &["once"]),
            ("id", &[]),
            ("name", &[]),
            ("max_redemptions", &[]),
            ("redeem_by", &[]),
            ("metadata", &[]),
            ("expand", &[]),
        ],
        expandable: &[],
        run: selling::create_coupon,
    },
    Endpoint {
        method: "GET",
        path: "/v1/coupons/{id}",
        source: COUPON_SOURCE,
        params: expand_only,
        implemented: &[("expand", &[])],
        expandable: &[],
        run: selling::retrieve_coupon,
    },
    Endpoint {
        method: "POST",
        path: "/v1/promotion_codes",
        source: PROMOTION_SOURCE,
        params: promotion_code_create,
        implemented: &[
            ("promotion[type]", &["coupon"]),
            ("promotion[coupon]", &[]),
            ("code", &[]),
            ("active", &[]),
            ("max_redemptions", &[]),
            ("expires_at", &[]),
            ("metadata", &[]),
            ("expand", &[]),
        ],
        expandable: &[],
        run: selling::create_promotion_code,
    },
    Endpoint {
        method: "GET",
        path: "/v1/promotion_codes",
        source: PROMOTION_SOURCE,
        params: promotion_code_list,
        implemented: &[
            ("code", &[]),
            ("active", &[]),
            ("coupon", &[]),
            ("created", &[]),
            ("limit", &[]),
            ("starting_after", &[]),
            ("ending_before", &[]),
            ("expand", &[]),
        ],
        expandable: &[],
        run: selling::list_promotion_codes,
    },
    Endpoint {
        method: "GET",
        path: "/v1/promotion_codes/{id}",
        source: PROMOTION_SOURCE,
        params: expand_only,
        implemented: &[("expand", &[])],
        expandable: &[],
        run: selling::retrieve_promotion_code,
    },
    Endpoint {
        method: "POST",
        path: "/v1/promotion_codes/{id}",
        source: PROMOTION_SOURCE,
        params: promotion_code_update,
        implemented: &[("active", &[]), ("metadata", &[]), ("expand", &[])],
        expandable: &[],
        run: selling::update_promotion_code,
    },
    Endpoint {
        method: "GET",
        path: "/v1/tax/settings",
        source: "Stripe's API reference, Tax Settings: Retrieve settings (`GET /v1/tax/settings`, `expand` only), \
                 API 2026-09-30.endive; `status` is `active` or `pending` (test switch `/_sim/tax/settings`)",
        params: expand_only,
        implemented: &[("expand", &[])],
        expandable: &[],
        run: selling::tax_settings,
    },
    Endpoint {
        method: "POST",
        path: "/v1/webhook_endpoints",
        source: "npm `stripe@23.1.0` `esm/resources/WebhookEndpoints.d.ts` `WebhookEndpointCreateParams` \
                 (the `enabled_events` and `api_version` enums not copied: only `*` is simulated)",
        params: webhook_endpoint_create,
        implemented: &[("url", &[]), ("enabled_events[]", &["*"]), ("connect", &["false"]), ("expand", &[])],
        expandable: &[],
        run: core::create_webhook_endpoint,
    },
];

/// The endpoint serving `method` `path`, and the path's `{id}` (empty when it has none).
pub fn find(method: &str, path: &str) -> Option<(&'static Endpoint, String)> {
    let segments: Vec<&str> = path.split('/').collect();
    ENDPOINTS.iter().filter(|e| e.method == method).find_map(|e| {
        let pattern: Vec<&str> = e.path.split('/').collect();
        if pattern.len() != segments.len() {
            return None;
        }
        let mut id = String::new();
        for (p, s) in pattern.iter().zip(&segments) {
            if *p == "{id}" {
                if s.is_empty() {
                    return None;
                }
                id = s.to_string();
            } else if p != s {
                return None;
            }
        }
        Some((e, id))
    })
}

fn cached(cell: &'static OnceLock<Value>, build: fn() -> Value) -> &'static Value {
    cell.get_or_init(build)
}

fn object(properties: Value, required: &[&str]) -> Value {
    json!({"type": "object", "properties": properties, "required": required})
}

fn expand_param() -> Value {
    json!({"type": "array", "items": {"type": "string", "maxLength": 5000}})
}

fn metadata_param() -> Value {
    // `Emptyable<MetadataParam>`: `metadata=""` unsets; values are strings.
    json!({"type": "object", "emptyable": true, "additionalProperties": {"type": "string"}})
}

/// `RangeQueryParam | number`.
fn range_param() -> Value {
    let int = json!({"type": "integer"});
    json!({"anyOf": [int.clone(), {"type": "object", "properties": {"gt": int, "gte": int, "lt": int, "lte": int}}]})
}

/// `PaginationParams` and `expand`, plus `extra`.
fn paginated(extra: Value) -> Value {
    let mut props = json!({
        "ending_before": {"type": "string"}, "limit": {"type": "integer"}, "starting_after": {"type": "string"},
        "expand": expand_param()
    });
    if let (Some(p), Value::Object(extra)) = (props.as_object_mut(), extra) {
        p.extend(extra);
    }
    object(props, &[])
}

fn expand_only() -> &'static Value {
    static CELL: OnceLock<Value> = OnceLock::new();
    cached(&CELL, || object(json!({"expand": expand_param()}), &[]))
}

fn paginated_expand() -> &'static Value {
    static CELL: OnceLock<Value> = OnceLock::new();
    cached(&CELL, || paginated(json!({})))
}

fn session_list() -> &'static Value {
    static CELL: OnceLock<Value> = OnceLock::new();
    cached(&CELL, || {
        paginated(json!({
            "created": range_param(), "customer": {"type": "string"}, "customer_account": {"type": "string"},
            "customer_details": {"type": "object", "required": ["email"], "properties": {"email": {"type": "string"}}},
            "payment_intent": {"type": "string"}, "payment_link": {"type": "string"},
            "status": {"type": "string", "enum": ["complete", "expired", "open"]}, "subscription": {"type": "string"}
        }))
    })
}

fn refund_create() -> &'static Value {
    static CELL: OnceLock<Value> = OnceLock::new();
    cached(&CELL, || {
        object(
            json!({
                "amount": {"type": "integer"}, "charge": {"type": "string"}, "currency": {"type": "string"},
                "customer": {"type": "string"}, "expand": expand_param(), "instructions_email": {"type": "string"},
                "metadata": metadata_param(), "origin": {"type": "string", "enum": ["customer_balance"]},
                "payment_intent": {"type": "string"},
                "reason": {"type": "string", "enum": ["duplicate", "fraudulent", "requested_by_customer"]},
                "refund_application_fee": {"type": "boolean"}, "reverse_transfer": {"type": "boolean"}
            }),
            &[],
        )
    })
}

fn refund_list() -> &'static Value {
    static CELL: OnceLock<Value> = OnceLock::new();
    cached(&CELL, || {
        paginated(json!({"charge": {"type": "string"}, "created": range_param(), "payment_intent": {"type": "string"}}))
    })
}

fn event_list() -> &'static Value {
    static CELL: OnceLock<Value> = OnceLock::new();
    cached(&CELL, || {
        paginated(json!({
            "created": range_param(), "delivery_success": {"type": "boolean"}, "type": {"type": "string"},
            "types": {"type": "array", "items": {"type": "string"}}
        }))
    })
}

fn payment_intent_retrieve() -> &'static Value {
    static CELL: OnceLock<Value> = OnceLock::new();
    cached(&CELL, || object(json!({"client_secret": {"type": "string"}, "expand": expand_param()}), &[]))
}

fn webhook_endpoint_create() -> &'static Value {
    static CELL: OnceLock<Value> = OnceLock::new();
    cached(&CELL, || {
        object(
            json!({
                "enabled_events": {"type": "array", "items": {"type": "string"}}, "url": {"type": "string"},
                "api_version": {"type": "string"}, "connect": {"type": "boolean"},
                "description": {"type": "string", "emptyable": true}, "expand": expand_param(),
                "metadata": metadata_param()
            }),
            &["enabled_events", "url"],
        )
    })
}

fn coupon_create() -> &'static Value {
    static CELL: OnceLock<Value> = OnceLock::new();
    cached(&CELL, || {
        object(
            json!({
                "amount_off": {"type": "integer"},
                "applies_to": {"type": "object", "properties": {"products": {"type": "array", "items": {"type": "string"}}}},
                "currency": {"type": "string"},
                "currency_options": {"type": "object", "additionalProperties": {"type": "object", "required": ["amount_off"], "properties": {"amount_off": {"type": "integer"}}}},
                "duration": {"type": "string", "enum": ["forever", "once", "repeating"]},
                "duration_in_months": {"type": "integer"}, "expand": expand_param(),
                "id": {"type": "string", "maxLength": 5000}, "max_redemptions": {"type": "integer"},
                "metadata": metadata_param(), "name": {"type": "string", "maxLength": 40},
                "percent_off": {"type": "number"}, "redeem_by": {"type": "integer"}
            }),
            &[],
        )
    })
}

fn promotion_code_create() -> &'static Value {
    static CELL: OnceLock<Value> = OnceLock::new();
    cached(&CELL, || {
        object(
            json!({
                "active": {"type": "boolean"}, "code": {"type": "string", "maxLength": 500},
                "coupon": {"type": "string", "maxLength": 5000, "x-removed-in": "2025-09-30.clover"},
                "customer": {"type": "string", "maxLength": 5000}, "customer_account": {"type": "string", "maxLength": 5000},
                "expand": expand_param(), "expires_at": {"type": "integer"}, "max_redemptions": {"type": "integer"},
                "metadata": metadata_param(),
                "promotion": {"type": "object", "required": ["type"], "properties": {
                    "coupon": {"type": "string", "maxLength": 5000}, "type": {"type": "string", "enum": ["coupon"]}
                }},
                "restrictions": {"type": "object", "properties": {
                    "currency_options": {"type": "object", "additionalProperties": {"type": "object", "properties": {"minimum_amount": {"type": "integer"}}}},
                    "first_time_transaction": {"type": "boolean"}, "minimum_amount": {"type": "integer"},
                    "minimum_amount_currency": {"type": "string"}
                }}
            }),
            &["promotion"],
        )
    })
}

fn promotion_code_update() -> &'static Value {
    static CELL: OnceLock<Value> = OnceLock::new();
    cached(&CELL, || {
        object(
            json!({
                "active": {"type": "boolean"}, "expand": expand_param(), "metadata": metadata_param(),
                "restrictions": {"type": "object", "properties": {
                    "currency_options": {"type": "object", "additionalProperties": {"type": "object", "properties": {"minimum_amount": {"type": "integer"}}}}
                }}
            }),
            &[],
        )
    })
}

fn promotion_code_list() -> &'static Value {
    static CELL: OnceLock<Value> = OnceLock::new();
    cached(&CELL, || {
        paginated(json!({
            "active": {"type": "boolean"}, "code": {"type": "string", "maxLength": 5000},
            "coupon": {"type": "string", "maxLength": 5000}, "created": range_param(),
            "customer": {"type": "string", "maxLength": 5000}, "customer_account": {"type": "string", "maxLength": 5000}
        }))
    })
}

fn filter_eq(q: &Value, key: &str, item: &Value) -> bool {
    q.get(key).and_then(Value::as_str).is_none_or(|want| item[key] == want)
}

fn list_sessions(sim: &StripeSim, call: &Call) -> Result<Value, StripeError> {
    let q = &call.params;
    let items: Vec<Value> = {
        let state = sim.lock();
        state.session_order.iter().rev().map(|id| state.sessions[id].clone()).collect()
    };
    let mut out = Vec::new();
    for s in items {
        if filter_eq(q, "payment_intent", &s)
            && filter_eq(q, "status", &s)
            && core::created_matches(q, s["created"].as_i64().unwrap_or(0))
        {
            out.push(s);
        }
    }
    core::list("/v1/checkout/sessions", out, q)
}

fn list_refunds(sim: &StripeSim, call: &Call) -> Result<Value, StripeError> {
    let q = &call.params;
    let items: Vec<Value> = {
        let state = sim.lock();
        state.refund_order.iter().rev().map(|id| state.refunds[id].clone()).collect()
    };
    let out = items
        .into_iter()
        .filter(|r| {
            filter_eq(q, "charge", r)
                && filter_eq(q, "payment_intent", r)
                && core::created_matches(q, r["created"].as_i64().unwrap_or(0))
        })
        .collect();
    core::list("/v1/refunds", out, q)
}

fn list_events(sim: &StripeSim, call: &Call) -> Result<Value, StripeError> {
    let q = &call.params;
    let types: Option<Vec<&str>> =
        q.get("types").and_then(Value::as_array).map(|t| t.iter().filter_map(Value::as_str).collect());
    let out = sim
        .events()
        .into_iter()
        .rev()
        .filter(|e| {
            filter_eq(q, "type", e)
                && types.as_ref().is_none_or(|t| t.iter().any(|t| e["type"] == *t))
                && core::created_matches(q, e["created"].as_i64().unwrap_or(0))
        })
        .collect();
    core::list("/v1/events", out, q)
}

/// The endpoint list of README.md, from the table.
pub fn markdown() -> String {
    let mut out = String::from(
        "| Endpoint | Parameters simulated (values) | Other parameters Stripe accepts, refused as not simulated | Parameter tree from |\n|---|---|---|---|\n",
    );
    for e in ENDPOINTS {
        let simulated: Vec<String> = e
            .implemented
            .iter()
            .map(
                |(p, values)| {
                    if values.is_empty() {
                        format!("`{p}`")
                    } else {
                        format!("`{p}` (`{}`)", values.join("`, `"))
                    }
                },
            )
            .collect();
        let tree = (e.params)();
        let others: Vec<String> = tree["properties"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, v)| {
                let removed = v.get("x-removed-in").and_then(Value::as_str).is_some_and(|r| r <= schema::API_VERSION);
                !removed && !e.implemented.iter().any(|(p, _)| p == k || p.starts_with(&format!("{k}[")))
            })
            .map(|(k, _)| format!("`{k}`"))
            .collect();
        let partial: Vec<String> = tree["properties"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| {
                e.implemented.iter().any(|(p, _)| p.starts_with(&format!("{k}[")) && *p != format!("{k}[]"))
            })
            .map(|(k, _)| format!("other `{k}[…]`"))
            .collect();
        let refused = [others, partial].concat();
        let expandable: Vec<String> = e.expandable.iter().map(|x| format!("`{x}`")).collect();
        out.push_str(&format!(
            "| `{} {}` | {}{} | {} | {} |\n",
            e.method,
            e.path,
            simulated.join(", "),
            if expandable.is_empty() { String::new() } else { format!("; `expand[]`: {}", expandable.join(", ")) },
            if refused.is_empty() { "—".to_string() } else { refused.join(", ") },
            e.source
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_lists_exactly_the_table() {
        let readme = include_str!("../README.md");
        let begin = "<!-- endpoints: generated from src/endpoints.rs -->\n";
        let start = readme.find(begin).expect("README has the generated block") + begin.len();
        let end = readme[start..].find("<!-- endpoints end -->").expect("README closes the block") + start;
        let expected = markdown();
        assert!(
            readme[start..end] == expected,
            "crates/stripe-sim/README.md is out of date; replace its endpoint block with:\n{expected}"
        );
    }

    #[test]
    fn every_simulated_parameter_exists_in_its_tree() {
        for e in ENDPOINTS {
            for (p, _) in e.implemented {
                let mut node = (e.params)();
                for part in p.replace(']', "").split('[') {
                    node = if part.is_empty() {
                        &node["items"]
                    } else {
                        node.get("properties")
                            .and_then(|ps| ps.get(part))
                            .unwrap_or_else(|| &node["additionalProperties"])
                    };
                    if node.get("anyOf").is_some() {
                        break;
                    }
                }
                assert!(!node.is_null(), "{} {}: {p} is not in its parameter tree", e.method, e.path);
            }
        }
    }

    #[test]
    fn paths_match_with_ids() {
        let (e, id) = find("POST", "/v1/checkout/sessions/cs_1/expire").unwrap();
        assert_eq!((e.path, id.as_str()), ("/v1/checkout/sessions/{id}/expire", "cs_1"));
        assert!(find("GET", "/v1/checkout/sessions//expire").is_none());
        assert!(find("DELETE", "/v1/checkout/sessions").is_none());
    }
}
