"""The simulator driven by Stripe's official Python SDK (stripe==16.1.0), through every call the
server relies on, with every webhook it sends verified by the SDK's own verifier.

    python check.py path/to/stripe-sim

Starts the simulator binary on a free port, registers a small receiver as a webhook endpoint
(POST /v1/webhook_endpoints), runs the checks, and exits non-zero on the first answer that differs
from Stripe's documentation. References: https://docs.stripe.com/api (each check names its page).
"""

import http.server
import json
import socket
import subprocess
import sys
import threading
import time

import requests
import stripe

API_VERSION = "2026-09-30.endive"  # the server's pin (stripe_shared::version::VERSION)
KEY = "sk_test_mascot_sim"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Receiver(http.server.BaseHTTPRequestHandler):
    """A webhook endpoint that keeps each delivery's raw body and Stripe-Signature header."""

    received = []
    lock = threading.Lock()

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        with Receiver.lock:
            Receiver.received.append((body, self.headers.get("stripe-signature")))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def expect_error(kind, call, status, **fields):
    """`call` must raise the SDK's `kind` with this HTTP status and these error fields."""
    try:
        call()
    except kind as e:
        assert e.http_status == status, (e.http_status, status, e)
        for name, want in fields.items():
            got = getattr(e.error, name, None)
            assert got == want, f"{name}: {got!r} != {want!r} ({e.user_message})"
        assert e.request_id and e.request_id.startswith("req_"), "errors carry a Request-Id"
        return e
    raise AssertionError(f"expected {kind.__name__}")


def main(sim_bin):
    port = free_port()
    sim = subprocess.Popen([sim_bin, "--port", str(port)], stdout=subprocess.PIPE, text=True)
    try:
        line = sim.stdout.readline()
        assert "Stripe simulator on" in line, line
        run(f"http://127.0.0.1:{port}")
    finally:
        sim.terminate()
        sim.wait(timeout=10)


def run(base):
    started = time.monotonic()
    client = stripe.StripeClient(
        KEY, stripe_version=API_VERSION, base_addresses={"api": base}, max_network_retries=0
    )
    v1 = client.v1

    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    hook_url = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
    # https://docs.stripe.com/api/webhook_endpoints/create: the answer carries the signing secret.
    endpoint = v1.webhook_endpoints.create({"url": hook_url, "enabled_events": ["*"]})
    secret = endpoint.secret
    assert secret.startswith("whsec_"), endpoint

    def create(**extra):
        # What crates/server/src/billing/stripe_api.rs sends.
        params = {
            "mode": "payment",
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": "usd",
                        "unit_amount": 1299,
                        "product_data": {"name": "75 Mascot credits", "description": "Credits for the Mascot Figma plugin"},
                    },
                }
            ],
            "success_url": "http://127.0.0.1:9/billing/success?session_id={CHECKOUT_SESSION_ID}",
            "cancel_url": "http://127.0.0.1:9/billing/cancel",
            "client_reference_id": "user-1",
            "customer_email": "buyer@example.com",
            "metadata": {"user_id": "user-1", "pack_id": "pack_75", "credits": "75", "app": "mascot"},
            "payment_intent_data": {"metadata": {"pack_id": "pack_75"}, "description": "75 Mascot credits"},
            "adaptive_pricing": {"enabled": False},
            "expires_at": int(time.time()) + 3600,
        }
        params.update(extra.pop("params", {}))
        return v1.checkout.sessions.create(params, extra or None)

    def pay(session_id, action="pay", entered=None):
        # The hosted page's form: country, tax_id, promotion_code when the session asks for them.
        res = requests.post(f"{base}/c/pay/{session_id}/{action}", data=entered or {}, allow_redirects=False, timeout=10)
        assert res.status_code == 303, (res.status_code, res.text)

    # https://docs.stripe.com/api/checkout/sessions/create (line_items[].price_data)
    s = create()
    assert s.object == "checkout.session" and s.id.startswith("cs_test_"), s.id
    assert (s.status, s.payment_status, s.amount_total, s.currency) == ("open", "unpaid", 1299, "usd")
    assert s.url.endswith(s.id) and s.metadata["pack_id"] == "pack_75" and s.payment_intent is None
    assert s.last_response.request_id.startswith("req_")
    pay(s.id)

    # https://docs.stripe.com/api/checkout/sessions/retrieve + https://docs.stripe.com/api/expanding_objects
    paid = v1.checkout.sessions.retrieve(s.id, {"expand": ["payment_intent", "payment_intent.latest_charge"]})
    assert isinstance(paid.payment_intent, stripe.PaymentIntent), type(paid.payment_intent)
    assert paid.payment_intent.status == "succeeded" and paid.payment_intent.description == "75 Mascot credits"
    assert isinstance(paid.payment_intent.latest_charge, stripe.Charge)
    assert (paid.status, paid.payment_status) == ("complete", "paid")
    pi = paid.payment_intent.id
    plain = v1.checkout.sessions.retrieve(s.id)
    assert plain.payment_intent == pi, "not expanded unless asked"

    # https://docs.stripe.com/api/checkout/sessions/list: by payment_intent, by status + created[gte]
    by_pi = v1.checkout.sessions.list({"payment_intent": pi, "limit": 1})
    assert [x.id for x in by_pi.data] == [s.id]
    open_one = create()
    recent = v1.checkout.sessions.list({"status": "complete", "created": {"gte": int(time.time()) - 600}, "limit": 100})
    assert [x.id for x in recent.data] == [s.id], [x.id for x in recent.data]
    assert v1.checkout.sessions.list({"status": "complete", "created": {"gte": int(time.time()) + 600}}).data == []
    expect_error(stripe.InvalidRequestError, lambda: v1.checkout.sessions.list({"colour": "red"}), 400,
                 code="parameter_unknown", param="colour", type="invalid_request_error",
                 doc_url="https://stripe.com/docs/error-codes/parameter-unknown")
    expect_error(stripe.InvalidRequestError, lambda: v1.checkout.sessions.list({"status": "paid"}), 400, param="status")

    # https://docs.stripe.com/api/checkout/sessions/expire: only open sessions
    expired = v1.checkout.sessions.expire(open_one.id)
    assert expired.status == "expired"
    expect_error(stripe.InvalidRequestError, lambda: v1.checkout.sessions.expire(open_one.id), 400)
    expect_error(stripe.InvalidRequestError, lambda: v1.checkout.sessions.expire(s.id), 400)

    # https://docs.stripe.com/api/refunds: partial, full (the rest), over-refund, retrieve, list
    partial = v1.refunds.create({"payment_intent": pi, "amount": 500, "reason": "requested_by_customer"}, {"idempotency_key": "refund-1"})
    assert (partial.object, partial.amount, partial.status, partial.reason) == ("refund", 500, "succeeded", "requested_by_customer")
    refund_request = partial.last_response.request_id
    expect_error(stripe.InvalidRequestError, lambda: v1.refunds.create({"payment_intent": pi, "amount": 800}), 400,
                 code="amount_too_large")
    full = v1.refunds.create({"payment_intent": pi})
    assert full.amount == 799, full.amount
    expect_error(stripe.InvalidRequestError, lambda: v1.refunds.create({"payment_intent": pi, "amount": 1}), 400,
                 code="charge_already_refunded")
    expect_error(stripe.InvalidRequestError, lambda: v1.refunds.create({"payment_intent": pi, "reason": "banana"}), 400,
                 param="reason")
    assert v1.refunds.retrieve(partial.id).amount == 500
    listed = v1.refunds.list({"payment_intent": pi})
    assert [r.id for r in listed.data] == [full.id, partial.id], "newest first"
    charge = v1.charges.retrieve(full.charge)
    assert (charge.amount_refunded, charge.refunded) == (1299, True)
    expect_error(stripe.InvalidRequestError, lambda: v1.refunds.retrieve("re_nope"), 404, code="resource_missing")

    # https://docs.stripe.com/api/idempotent_requests: replay and conflict
    first = create(idempotency_key="create-1")
    again = create(idempotency_key="create-1")
    assert again.id == first.id and again.last_response.headers.get("idempotent-replayed") == "true"
    expect_error(stripe.IdempotencyError, lambda: create(idempotency_key="create-1", params={"client_reference_id": "user-2"}), 400)
    # A request that failed validation is not saved: the corrected one runs under the same key.
    expect_error(stripe.InvalidRequestError, lambda: create(idempotency_key="create-2", params={"colour": "red"}), 400,
                 code="parameter_unknown")
    second = create(idempotency_key="create-2")
    assert second.id != first.id and second.last_response.headers.get("idempotent-replayed") is None

    # A path or method Stripe does not serve is an unrecognized URL, raised as InvalidRequestError.
    e = expect_error(stripe.InvalidRequestError, lambda: client.raw_request("delete", "/v1/checkout/sessions"), 404)
    assert "Unrecognized request URL (DELETE: /v1/checkout/sessions)" in e.user_message, e.user_message

    # A delayed payment method: completed (unpaid), then async_payment_succeeded.
    delayed = create()
    pay(delayed.id, "pay-delayed-success")

    # https://docs.stripe.com/api/tax/settings/retrieve: pending until Stripe Tax is registered.
    assert v1.tax.settings.retrieve().status == "pending"
    expect_error(stripe.InvalidRequestError, lambda: create(params={"automatic_tax": {"enabled": True}}), 400,
                 param="automatic_tax[enabled]")
    requests.post(f"{base}/_sim/tax/settings", data={"status": "active"}, timeout=10).raise_for_status()
    assert v1.tax.settings.retrieve().status == "active"

    # https://docs.stripe.com/api/coupons/create, https://docs.stripe.com/api/promotion_codes/create
    # (since 2025-09-30.clover a code names its coupon through `promotion`).
    coupon = v1.coupons.create({"percent_off": 20, "duration": "once"})
    assert (coupon.object, coupon.percent_off, coupon.valid) == ("coupon", 20, True)
    promo = v1.promotion_codes.create({"promotion": {"type": "coupon", "coupon": coupon.id}, "code": "SDK20", "max_redemptions": 5})
    assert (promo.object, promo.code, promo.active, promo.promotion.coupon) == ("promotion_code", "SDK20", True, coupon.id)
    assert [p.id for p in v1.promotion_codes.list({"code": "SDK20"}).data] == [promo.id]
    expect_error(stripe.InvalidRequestError, lambda: v1.promotion_codes.create({"coupon": coupon.id}), 400,
                 code="parameter_unknown", param="coupon")
    expect_error(stripe.InvalidRequestError,
                 lambda: create(params={"allow_promotion_codes": True, "discounts": [{"coupon": coupon.id}]}), 400,
                 param="allow_promotion_codes")

    # Automatic tax (exclusive) with a promotion code entered on the page: 1299 − 260 = 1039, + 19 % (DE) = 197.
    taxed_items = [{"quantity": 1, "price_data": {"currency": "usd", "unit_amount": 1299, "tax_behavior": "exclusive",
                                                  "product_data": {"name": "75 Mascot credits", "tax_code": "txcd_10000000"}}}]
    taxed = create(params={"line_items": taxed_items, "automatic_tax": {"enabled": True}, "allow_promotion_codes": True,
                           "tax_id_collection": {"enabled": True}, "invoice_creation": {"enabled": True}})
    assert taxed.automatic_tax.enabled and taxed.automatic_tax.status == "requires_location_input"
    pay(taxed.id, entered={"country": "DE", "promotion_code": "sdk20"})
    taxed = v1.checkout.sessions.retrieve(taxed.id)
    assert (taxed.amount_subtotal, taxed.total_details.amount_discount, taxed.total_details.amount_tax, taxed.amount_total) == (1299, 260, 197, 1236)
    assert taxed.discounts[0].promotion_code == promo.id and taxed.invoice.startswith("in_")
    assert v1.promotion_codes.retrieve(promo.id).times_redeemed == 1

    # A 100 % coupon: complete with no_payment_required and no PaymentIntent.
    free = v1.coupons.create({"percent_off": 100, "duration": "once", "max_redemptions": 1})
    gift = create(params={"discounts": [{"coupon": free.id}]})
    assert (gift.amount_total, gift.total_details.amount_discount) == (0, 1299)
    pay(gift.id)
    gift = v1.checkout.sessions.retrieve(gift.id)
    assert (gift.status, gift.payment_status, gift.payment_intent) == ("complete", "no_payment_required", None)

    # Webhooks: every delivery verifies with the SDK's verifier (https://docs.stripe.com/webhooks/signature).
    wanted = {"checkout.session.completed", "checkout.session.expired", "charge.refunded", "refund.created",
              "checkout.session.async_payment_succeeded"}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with Receiver.lock:
            got = list(Receiver.received)
        if wanted <= {json.loads(b)["type"] for b, _ in got}:
            break
        time.sleep(0.1)
    events = []
    for body, sig in got:
        event = stripe.Webhook.construct_event(body.decode(), sig, secret)
        events.append(event)
        assert event.api_version == API_VERSION and event.livemode is False, event.api_version
    kinds = {e.type for e in events}
    assert wanted <= kinds, f"missing {wanted - kinds}"
    try:
        stripe.Webhook.construct_event(got[0][0].decode().replace('"livemode":false', '"livemode":true'), got[0][1], secret)
        raise AssertionError("a tampered body must not verify")
    except stripe.SignatureVerificationError:
        pass
    refunded = [e for e in events if e.type == "charge.refunded"]
    assert refunded[0].request.id == refund_request and refunded[0].request.idempotency_key == "refund-1"
    assert [e.data.object.amount_refunded for e in refunded] == [500, 1299], "cumulative"
    completed = next(e for e in events if e.type == "checkout.session.completed" and e.data.object.id == s.id)
    assert completed.request.id is None, "caused by the hosted page, not an API request"

    # Events can also be listed (https://docs.stripe.com/api/events/list).
    listed_events = v1.events.list({"type": "charge.refunded", "created": {"gte": int(time.time()) - 600}})
    assert len(listed_events.data) == 2

    print(f"stripe SDK {stripe.VERSION} against the simulator: {len(events)} webhooks verified, "
          f"all checks passed in {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    main(sys.argv[1])
