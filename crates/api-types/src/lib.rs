//! The HTTP contract of Mascot credits.
//!
//! Every request and response body of the API is a type here. The server serialises them, the Wasm
//! client deserialises them, and the TypeScript bindings in `plugin/src/generated/` are generated from
//! them (see `tests/bindings.rs`; never edit those files by hand). Money and credits are integers:
//! 64-bit in Rust, `number` in TypeScript (all values stay far below 2^53).

mod admin;
mod auth;
mod billing;
mod credits;
mod error;
mod packs;
mod service;
mod teams;

pub use admin::*;
pub use auth::*;
pub use billing::*;
pub use credits::*;
pub use error::*;
pub use packs::*;
pub use service::*;
pub use teams::*;

/// Every exported type, as `(file name, generated TypeScript)`. The bindings test compares this list
/// with the committed files, and `UPDATE_BINDINGS=1 cargo test -p api-types` rewrites them.
pub fn typescript_bindings() -> Vec<(String, String)> {
    use ts_rs::TS;
    macro_rules! bindings {
        ($($t:ty),* $(,)?) => {
            vec![$((
                format!("{}.ts", <$t as TS>::ident()),
                esm_imports(<$t as TS>::export_to_string().expect("ts-rs renders every API type")),
            )),*]
        };
    }
    bindings![
        ErrorBody,
        ErrorEnvelope,
        Pack,
        PacksResponse,
        Credentials,
        User,
        AuthResponse,
        PasswordChange,
        PasswordReset,
        AuthOptions,
        PasswordResetRequest,
        HandoffStart,
        HandoffStatus,
        HandoffPoll,
        Me,
        BalanceResponse,
        Expiring,
        EntryKind,
        HistoryEntry,
        HistoryResponse,
        SpendRequest,
        SpendResponse,
        HoldRequest,
        HoldResponse,
        CaptureRequest,
        HoldStatus,
        HoldOutcome,
        CheckoutRequest,
        CheckoutResponse,
        CheckoutStatus,
        CheckoutStatusResponse,
        CheckoutCancelResponse,
        TaxBehavior,
        PurchaseAmounts,
        CheckoutSettingsUsed,
        CheckoutSummary,
        CheckoutListResponse,
        VerifyRequest,
        VerifyResponse,
        ServiceTokenResponse,
        RedeemRequest,
        RedeemResponse,
        UsageResponse,
        UsageDay,
        ExportResponse,
        AlertSettings,
        TeamRole,
        CapPeriod,
        Cap,
        CapStatus,
        CreateTeamRequest,
        TeamSummary,
        TeamsResponse,
        TeamMember,
        MembersResponse,
        UpdateMemberRequest,
        InviteRequest,
        InvitationCreated,
        Invitation,
        InvitationsResponse,
        AcceptInvitationRequest,
        TeamActivityEntry,
        TeamActivityResponse,
    ]
}

/// ts-rs writes `import type { User } from "./User";`; with the `.js` extension the same files
/// also resolve under Node's ESM rules (`moduleResolution: NodeNext`), as the Node service SDK's
/// users compile them, while bundlers (the plugin's esbuild and tsc) map `./User.js` to `User.ts`.
fn esm_imports(text: String) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches('\n');
        match body.strip_suffix("\";") {
            Some(head) if body.starts_with("import type ") && head.contains(" from \"./") && !head.ends_with(".js") => {
                out.push_str(head);
                out.push_str(".js\";");
                out.push_str(&line[body.len()..]);
            }
            _ => out.push_str(line),
        }
    }
    out
}
