//! The few Stripe API calls Mascot makes, through async-stripe's client and request builders.
//!
//! Answers are read as plain JSON into the small views below (only the fields we use), not into
//! async-stripe's full typed objects: a field added or changed by a newer Stripe API version must
//! never turn a paid session into a parse error.

use std::{collections::HashMap, time::Duration};

use secrecy::ExposeSecret;
use serde::Deserialize;
use stripe::{Client, ClientBuilder, IdempotencyKey, RequestStrategy, StripeError, StripeRequest};
use stripe_checkout::checkout_session::{
    CreateCheckoutSession, CreateCheckoutSessionAdaptivePricing, CreateCheckoutSessionAutomaticTax,
    CreateCheckoutSessionInvoiceCreation, CreateCheckoutSessionLineItems, CreateCheckoutSessionLineItemsPriceData,
    CreateCheckoutSessionLineItemsPriceDataTaxBehavior, CreateCheckoutSessionPaymentIntentData,
    CreateCheckoutSessionTaxIdCollection, ExpireCheckoutSession, ListCheckoutSession, ProductData,
    RetrieveCheckoutSession,
};
use stripe_checkout::{CheckoutSessionMode, CheckoutSessionStatus};

use crate::config::{CheckoutSettings, StripeConfig, TaxBehavior};

/// A Checkout Session as far as fulfilment cares.
#[derive(Debug, Clone, Deserialize)]
pub struct SessionView {
    pub id: String,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub payment_status: Option<String>,
    #[serde(default)]
    pub amount_total: Option<i64>,
    /// The line items before discount and tax (the pack price).
    #[serde(default)]
    pub amount_subtotal: Option<i64>,
    /// Discount, shipping and tax; null only on objects that are not a Checkout Session Stripe made.
    #[serde(default)]
    pub total_details: Option<TotalDetails>,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub client_reference_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_metadata")]
    pub metadata: HashMap<String, String>,
    /// An id, or an expanded object when asked for.
    #[serde(default)]
    pub payment_intent: Option<serde_json::Value>,
    /// The invoice's id (or object) when the session was created with invoices on.
    #[serde(default)]
    pub invoice: Option<serde_json::Value>,
    #[serde(default)]
    pub livemode: bool,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub expires_at: Option<i64>,
    #[serde(default)]
    pub created: Option<i64>,
}

impl SessionView {
    pub fn payment_intent_id(&self) -> Option<String> {
        match &self.payment_intent {
            Some(serde_json::Value::String(id)) => Some(id.clone()),
            Some(serde_json::Value::Object(o)) => o.get("id").and_then(|v| v.as_str()).map(str::to_string),
            _ => None,
        }
    }

    pub fn invoice_id(&self) -> Option<String> {
        match &self.invoice {
            Some(serde_json::Value::String(id)) => Some(id.clone()),
            Some(serde_json::Value::Object(o)) => o.get("id").and_then(|v| v.as_str()).map(str::to_string),
            _ => None,
        }
    }

    /// Complete, and either paid or with nothing to pay (a 100 % promotion code): nothing more
    /// will happen to it at Stripe but refunds and disputes.
    pub fn is_settled(&self) -> bool {
        self.status.as_deref() == Some("complete")
            && matches!(self.payment_status.as_deref(), Some("paid" | "no_payment_required"))
    }

    /// The discount, tax and shipping Stripe reports (zero when it reports none).
    pub fn details(&self) -> TotalDetails {
        self.total_details.clone().unwrap_or_default()
    }
}

/// `total_details` of a Checkout Session (null amounts read as 0).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct TotalDetails {
    #[serde(default, deserialize_with = "zero_if_null")]
    pub amount_discount: i64,
    #[serde(default, deserialize_with = "zero_if_null")]
    pub amount_shipping: i64,
    #[serde(default, deserialize_with = "zero_if_null")]
    pub amount_tax: i64,
}

fn zero_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    Ok(Option::<i64>::deserialize(d)?.unwrap_or(0))
}

/// `GET /v1/tax/settings` (not among async-stripe's request builders in the crates we build).
struct RetrieveTaxSettings;

impl StripeRequest for RetrieveTaxSettings {
    type Output = miniserde::json::Value;

    fn build(&self) -> stripe_client_core::RequestBuilder {
        stripe_client_core::RequestBuilder::new(stripe_client_core::StripeMethod::Get, "/tax/settings")
    }
}

/// `GET /v1/payment_intents/{id}?expand[]=latest_charge` (the charge carries the receipt).
struct RetrievePaymentIntentWithCharge(String);

impl StripeRequest for RetrievePaymentIntentWithCharge {
    type Output = miniserde::json::Value;

    fn build(&self) -> stripe_client_core::RequestBuilder {
        stripe_client_core::RequestBuilder::new(
            stripe_client_core::StripeMethod::Get,
            format!("/payment_intents/{}", self.0),
        )
        .query(&ExpandQuery { expand: &["latest_charge"] })
    }
}

/// `expand[0]=…` as async-stripe's own request builders encode it.
#[derive(serde::Serialize)]
struct ExpandQuery {
    expand: &'static [&'static str],
}

/// `GET /v1/invoices/{id}` (not among the crates we build).
struct RetrieveInvoice(String);

impl StripeRequest for RetrieveInvoice {
    type Output = miniserde::json::Value;

    fn build(&self) -> stripe_client_core::RequestBuilder {
        stripe_client_core::RequestBuilder::new(stripe_client_core::StripeMethod::Get, format!("/invoices/{}", self.0))
    }
}

/// Metadata values are strings at Stripe; tolerate `null` or odd values instead of failing the parse.
fn lenient_metadata<'de, D: serde::Deserializer<'de>>(d: D) -> Result<HashMap<String, String>, D::Error> {
    let value = Option::<serde_json::Value>::deserialize(d)?;
    let mut out = HashMap::new();
    if let Some(serde_json::Value::Object(map)) = value {
        for (k, v) in map {
            if let serde_json::Value::String(s) = v {
                out.insert(k, s);
            }
        }
    }
    Ok(out)
}

#[derive(Debug, Clone, Deserialize)]
struct ListView {
    #[serde(default)]
    data: Vec<serde_json::Value>,
    #[serde(default)]
    has_more: bool,
}

/// What the server asks Stripe to create for one pack purchase.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub user_id: String,
    pub email: String,
    pub pack_id: String,
    pub credits: i64,
    pub amount_cents: i64,
    pub product_name: String,
    pub success_url: String,
    pub cancel_url: String,
    pub expires_at: i64,
    /// Tax, tax IDs, invoices and promotion codes, as configured when the session is created.
    pub settings: CheckoutSettings,
}

/// Stripe's tax code for the packs: "General - Electronically Supplied Services"
/// (https://docs.stripe.com/tax/tax-codes), what credits for a plugin delivered online are.
pub const TAX_CODE: &str = "txcd_10000000";

#[derive(Debug, thiserror::Error)]
pub enum StripeCallError {
    /// Stripe answered with an error (4xx/5xx); `message` is Stripe's, safe to log.
    #[error("Stripe answered {status}: {message}")]
    Api { status: u16, code: Option<String>, message: String },
    #[error("could not reach Stripe: {0}")]
    Network(String),
    #[error("unexpected answer from Stripe: {0}")]
    Decode(String),
}

impl StripeCallError {
    /// Worth retrying with the same idempotency key.
    fn is_transient(&self) -> bool {
        match self {
            StripeCallError::Api { status, .. } => *status == 429 || *status >= 500,
            StripeCallError::Network(_) => true,
            StripeCallError::Decode(_) => false,
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, StripeCallError::Api { status: 404, .. })
    }
}

impl From<StripeError> for StripeCallError {
    fn from(e: StripeError) -> Self {
        match e {
            StripeError::Stripe(err, status) => StripeCallError::Api {
                status,
                code: err.code.map(|c| c.as_str().to_string()),
                message: err.message.unwrap_or_default(),
            },
            StripeError::JSONDeserialize(m) => StripeCallError::Decode(m),
            StripeError::ClientError(m) => StripeCallError::Network(m),
            StripeError::ConfigError(m) => StripeCallError::Network(m),
            StripeError::Timeout => StripeCallError::Network("timed out".into()),
        }
    }
}

#[derive(Clone)]
pub struct StripeApi {
    client: Client,
    livemode: bool,
}

const ATTEMPTS: u32 = 3;
const TIMEOUT: Duration = Duration::from_secs(20);

impl StripeApi {
    pub fn new(config: &StripeConfig) -> anyhow::Result<StripeApi> {
        let client = ClientBuilder::new(config.secret_key.expose_secret())
            .url(config.api_base.clone())
            .build()
            .map_err(|e| anyhow::anyhow!("cannot build the Stripe client: {e}"))?;
        Ok(StripeApi { client, livemode: config.livemode() })
    }

    pub fn livemode(&self) -> bool {
        self.livemode
    }

    /// Sends `request`, retrying only what Stripe says may pass. A POST carries one idempotency
    /// key for all its attempts (a retry must never create a second session); a GET carries none,
    /// as Stripe documents keys for POST only (https://docs.stripe.com/api/idempotent_requests).
    async fn send(&self, request: impl StripeRequest, what: &str) -> Result<serde_json::Value, StripeCallError> {
        let post = matches!(request.build().method, stripe_client_core::StripeMethod::Post);
        let key = post.then(IdempotencyKey::new_uuid_v4);
        let strategy = match &key {
            Some(key) => RequestStrategy::Idempotent(key.clone()),
            None => RequestStrategy::Once,
        };
        let mut last = None;
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(250 * 2u64.pow(attempt))).await;
            }
            let sent = request
                .build()
                .customize::<miniserde::json::Value>()
                .request_strategy(strategy.clone())
                .timeout(TIMEOUT)
                .send(&self.client)
                .await;
            match sent {
                Ok(value) => {
                    return serde_json::from_str(&miniserde::json::to_string(&value))
                        .map_err(|e| StripeCallError::Decode(e.to_string()));
                }
                Err(e) => {
                    let e = StripeCallError::from(e);
                    tracing::warn!(call = what, attempt = attempt + 1, idempotency_key = key.as_ref().map(|k| k.as_str()), error = %e, "Stripe call failed");
                    if !e.is_transient() {
                        return Err(e);
                    }
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| StripeCallError::Network("no attempt made".into())))
    }

    fn session_from(value: serde_json::Value) -> Result<SessionView, StripeCallError> {
        serde_json::from_value(value).map_err(|e| StripeCallError::Decode(format!("checkout session: {e}")))
    }

    pub async fn create_checkout_session(&self, s: &NewSession) -> Result<SessionView, StripeCallError> {
        let metadata: HashMap<String, String> = [
            ("user_id".to_string(), s.user_id.clone()),
            ("pack_id".to_string(), s.pack_id.clone()),
            ("credits".to_string(), s.credits.to_string()),
            ("app".to_string(), "mascot".to_string()),
        ]
        .into();
        let mut product = ProductData::new(s.product_name.clone());
        product.description = Some("Credits for the Mascot Figma plugin".into());
        let mut price = CreateCheckoutSessionLineItemsPriceData::new(stripe_types::Currency::USD);
        price.unit_amount = Some(s.amount_cents);
        if s.settings.automatic_tax {
            // Explicit rather than the Dashboard's defaults: fulfilment checks the amounts against
            // the behaviour recorded with the session, so it must be the one Stripe applied.
            product.tax_code = Some(TAX_CODE.into());
            price.tax_behavior = Some(match s.settings.tax_behavior {
                TaxBehavior::Exclusive => CreateCheckoutSessionLineItemsPriceDataTaxBehavior::Exclusive,
                TaxBehavior::Inclusive => CreateCheckoutSessionLineItemsPriceDataTaxBehavior::Inclusive,
            });
        }
        price.product_data = Some(product);
        let mut item = CreateCheckoutSessionLineItems::new();
        item.quantity = Some(1);
        item.price_data = Some(price);
        // Charges, refunds and disputes carry the PaymentIntent's metadata, not the session's.
        let mut intent = CreateCheckoutSessionPaymentIntentData::new();
        intent.metadata = Some(metadata.clone());
        intent.description = Some(s.product_name.clone());
        let mut adaptive = CreateCheckoutSessionAdaptivePricing::new();
        // The pack is priced in USD and charged exactly as listed.
        adaptive.enabled = Some(false);

        let request = CreateCheckoutSession::new()
            .mode(CheckoutSessionMode::Payment)
            .line_items(vec![item])
            .success_url(s.success_url.clone())
            .cancel_url(s.cancel_url.clone())
            .client_reference_id(s.user_id.clone())
            .customer_email(s.email.clone())
            .metadata(metadata)
            .payment_intent_data(intent)
            .adaptive_pricing(adaptive)
            .expires_at(s.expires_at);
        // Each setting is sent only when on: off is Stripe's default, and the request stays the
        // one it was before these settings existed.
        let settings = s.settings;
        let request = if settings.automatic_tax {
            request.automatic_tax(CreateCheckoutSessionAutomaticTax::new(true))
        } else {
            request
        };
        let request = if settings.tax_id_collection {
            request.tax_id_collection(CreateCheckoutSessionTaxIdCollection::new(true))
        } else {
            request
        };
        let request = if settings.invoice_creation {
            request.invoice_creation(CreateCheckoutSessionInvoiceCreation::new(true))
        } else {
            request
        };
        let request = if settings.allow_promotion_codes { request.allow_promotion_codes(true) } else { request };
        Self::session_from(self.send(request, "create checkout session").await?)
    }

    /// The `status` of the account's Stripe Tax settings (`active` once registered, else `pending`).
    pub async fn tax_settings_status(&self) -> Result<String, StripeCallError> {
        let value = self.send(RetrieveTaxSettings, "retrieve tax settings").await?;
        value
            .get("status")
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .ok_or_else(|| StripeCallError::Decode("tax settings without a status".into()))
    }

    /// The receipt address of a PaymentIntent's charge (`latest_charge.receipt_url`), if any.
    pub async fn receipt_url(&self, payment_intent: &str) -> Result<Option<String>, StripeCallError> {
        let pi =
            self.send(RetrievePaymentIntentWithCharge(payment_intent.to_string()), "retrieve payment intent").await?;
        Ok(pi.pointer("/latest_charge/receipt_url").and_then(|v| v.as_str()).map(str::to_string))
    }

    /// The hosted page of an invoice (`hosted_invoice_url`), if any.
    pub async fn invoice_url(&self, invoice: &str) -> Result<Option<String>, StripeCallError> {
        let inv = self.send(RetrieveInvoice(invoice.to_string()), "retrieve invoice").await?;
        Ok(inv.get("hosted_invoice_url").and_then(|v| v.as_str()).map(str::to_string))
    }

    pub async fn retrieve_session(&self, id: &str) -> Result<SessionView, StripeCallError> {
        Self::session_from(self.send(RetrieveCheckoutSession::new(id), "retrieve checkout session").await?)
    }

    /// Expires an open session so it can no longer be paid (Stripe refuses if it is complete).
    pub async fn expire_session(&self, id: &str) -> Result<SessionView, StripeCallError> {
        Self::session_from(self.send(ExpireCheckoutSession::new(id), "expire checkout session").await?)
    }

    /// The session paid with this PaymentIntent, if any (refunds and disputes name only the PI).
    pub async fn session_for_payment_intent(
        &self,
        payment_intent: &str,
    ) -> Result<Option<SessionView>, StripeCallError> {
        let list = self
            .send(ListCheckoutSession::new().payment_intent(payment_intent).limit(1), "list checkout sessions")
            .await?;
        let list: ListView = serde_json::from_value(list).map_err(|e| StripeCallError::Decode(e.to_string()))?;
        list.data.into_iter().next().map(Self::session_from).transpose()
    }

    /// Every complete session created at or after `since` (unix seconds), newest first.
    /// Complete sessions created from `since` (included) to `until` (excluded; no end when `None`).
    pub async fn complete_sessions_between(
        &self,
        since: i64,
        until: Option<i64>,
    ) -> Result<Vec<SessionView>, StripeCallError> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut request = ListCheckoutSession::new()
                .status(CheckoutSessionStatus::Complete)
                .created(match until {
                    None => stripe_types::RangeQueryTs::gte(since),
                    Some(until) => stripe_types::RangeQueryTs::Bounds(stripe_types::RangeBoundsTs {
                        gte: Some(since),
                        lt: Some(until),
                        ..Default::default()
                    }),
                })
                .limit(100);
            if let Some(a) = &after {
                request = request.starting_after(a.clone());
            }
            let list: ListView = serde_json::from_value(self.send(request, "list checkout sessions").await?)
                .map_err(|e| StripeCallError::Decode(e.to_string()))?;
            let page: Vec<SessionView> = list.data.into_iter().map(Self::session_from).collect::<Result<_, _>>()?;
            after = page.last().map(|s| s.id.clone());
            let done = !list.has_more || page.is_empty();
            out.extend(page);
            if done {
                return Ok(out);
            }
        }
    }
}
