use serde::{Deserialize, Serialize};
use ts_rs::TS;

/// A credit pack as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Pack {
    /// `pack_25`, `pack_75` or `pack_200`.
    pub id: String,
    #[ts(type = "number")]
    pub credits: i64,
    /// Price in the smallest currency unit (cents).
    #[ts(type = "number")]
    pub price_cents: i64,
    /// ISO currency code, lower case as Stripe writes it (`usd`).
    pub currency: String,
    /// Ready to show, e.g. "75 credits — $12.99".
    pub label: String,
    /// Shown next to the price when tax is added at checkout (Stripe Tax with exclusive prices):
    /// "plus tax"; null when the price is what the buyer pays.
    pub tax_note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PacksResponse {
    pub packs: Vec<Pack>,
}

/// One entry of the pack catalogue. The catalogue below is the single definition of what is sold:
/// Checkout prices, fulfilment checks and the plugin's pack list all read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackDef {
    pub id: &'static str,
    pub credits: i64,
    pub price_cents: i64,
    pub currency: &'static str,
}

pub const PACKS: [PackDef; 3] = [
    PackDef { id: "pack_25", credits: 25, price_cents: 599, currency: "usd" },
    PackDef { id: "pack_75", credits: 75, price_cents: 1299, currency: "usd" },
    PackDef { id: "pack_200", credits: 200, price_cents: 2599, currency: "usd" },
];

/// The pack with this id, if it is for sale.
pub fn find_pack(id: &str) -> Option<&'static PackDef> {
    PACKS.iter().find(|p| p.id == id)
}

impl PackDef {
    /// "$12.99" (the catalogue is USD-only).
    pub fn price_display(&self) -> String {
        format!("${}.{:02}", self.price_cents / 100, self.price_cents % 100)
    }

    /// The Checkout line item's product name, e.g. "75 Mascot credits".
    pub fn product_name(&self) -> String {
        format!("{} Mascot credits", self.credits)
    }

    pub fn to_api(&self) -> Pack {
        Pack {
            id: self.id.to_string(),
            credits: self.credits,
            price_cents: self.price_cents,
            currency: self.currency.to_string(),
            label: format!("{} credits — {}", self.credits, self.price_display()),
            tax_note: None,
        }
    }
}

impl PacksResponse {
    pub fn catalogue() -> Self {
        PacksResponse { packs: PACKS.iter().map(PackDef::to_api).collect() }
    }

    /// The catalogue with `tax_note` on every pack (e.g. "plus tax").
    pub fn catalogue_with_tax_note(note: Option<&str>) -> Self {
        let mut c = Self::catalogue();
        for p in &mut c.packs {
            p.tax_note = note.map(str::to_string);
        }
        c
    }
}
