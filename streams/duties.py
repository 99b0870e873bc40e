"""Duty and VAT assessment of an accepted declaration (spec §6), as a pure function.

What it decides, per goods item: the customs value in EUR, the tariff line (longest commodity
prefix), the duty rate (preferential only for preference `300` and an origin the line lists), the
duty, and the VAT of the presentation office's Member State on customs value plus duty. Totals
are the sums of the rounded item amounts, so that the items of the event always add up to its
totals, as a trader or an accountant would check them.

Why it looks the way it does: money is a legal amount, so every step is `Decimal` under an
explicit context (never the caller's global one, never a float) and every rounding is the spec's
half-up to cents. The context is wide enough that products are exact before that one rounding:
a rounded intermediate would make the result depend on the order of operations.

The result is the Avro-native content of `duties.assessed` without its envelope (`eventId`,
`occurredAt`, `mrn`): `{**assess_duties(...), "eventId": ..., "occurredAt": ..., "mrn": ...}` is
an encodable record.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Context, Decimal, localcontext
from typing import Any

from streams.reference import ReferenceData, TariffLine

CENT = Decimal("0.01")
# The scale of rates in the Avro contract (decimal(18, 6), percent).
RATE_QUANTUM = Decimal("0.000001")
# decimal(18, 2): at most 16 digits before the point.
MONEY_LIMIT = Decimal(10) ** 16
RATE_LIMIT = Decimal(10) ** 12

# Operands are at most 18 significant digits (amount × exchange rate, value × rate, (value + duty)
# × rate), so 60 digits keeps every product exact before the single half-up rounding.
_CONTEXT = Context(prec=60, rounding=ROUND_HALF_UP)


class AssessmentError(ValueError):
    """A declaration that cannot be assessed: no tariff line, no VAT rate, a value the contract
    cannot carry. Validation (R041, R051, R069) normally prevents it; reaching it means the
    declaration or the reference data changed under the stage."""


# The helpers below name the context of each operation instead of entering it: they run
# several times per goods item, and entering a local context costs more than the arithmetic.


def round_half_up(value: Decimal, quantum: Decimal = CENT) -> Decimal:
    return value.quantize(quantum, rounding=ROUND_HALF_UP, context=_CONTEXT)


def customs_value_eur(amount: Decimal, exchange_rate: Decimal | None) -> Decimal:
    """`amount` (invoice currency) in EUR, rounded half-up to cents; no rate means EUR."""
    value = amount if exchange_rate is None else _CONTEXT.multiply(amount, exchange_rate)
    return value.quantize(CENT, rounding=ROUND_HALF_UP, context=_CONTEXT)


def exchange_rate(declaration: Mapping[str, Any]) -> Decimal | None:
    """The declaration's EUR rate, None for EUR; a foreign currency without a rate is refused
    rather than valued one to one."""
    rate: Decimal | None = declaration["exchangeRate"]
    if rate is None and declaration["currency"] != "EUR":
        raise AssessmentError(f"currency {declaration['currency']} has no exchangeRate (rule R051)")
    return rate


def duty_rate(line: TariffLine, origin: str, preference: str) -> Decimal:
    """The preferential rate only when the trader claims it (`300`) and the line grants it to
    that origin; any other claim pays the third-country (erga omnes) rate."""
    if preference == "300" and origin in line.preferential:
        return line.preferential[origin]
    return line.erga_omnes


def _rate(value: Decimal, what: str) -> Decimal:
    # A rate with more decimals than the contract carries would make the event disagree with the
    # amounts computed from it: refuse it instead of rounding it silently.
    quantized = round_half_up(value, RATE_QUANTUM)
    if quantized != value or not quantized < RATE_LIMIT:
        raise AssessmentError(f"{what} {value} does not fit decimal(18,6)")
    return quantized


def _money(value: Decimal, what: str) -> Decimal:
    if not value < MONEY_LIMIT:
        raise AssessmentError(f"{what} {value} does not fit decimal(18,2)")
    return value


def assess_duties(declaration: Mapping[str, Any], reference: ReferenceData) -> dict[str, Any]:
    """The `duties.assessed` content of `declaration` (Avro-native form), without envelope."""
    state = declaration["presentationOffice"][:2]
    vat_rate = reference.vat_rates.get(state)
    if vat_rate is None:
        raise AssessmentError(
            f"presentationOffice {declaration['presentationOffice']}: "
            f"{state!r} has no VAT rate (rule R041)"
        )
    vat_rate = _rate(vat_rate, f"VAT rate of {state}")
    rate = exchange_rate(declaration)
    items: list[dict[str, Any]] = []
    total_duty = total_vat = Decimal("0.00")
    with localcontext(_CONTEXT):
        for item in declaration["goodsItems"]:
            where = f"goods item {item['sequenceNumber']}"
            code = item["commodityCode"]
            line = reference.tariff_line(code)
            if line is None:
                raise AssessmentError(f"{where}: commodityCode {code} has no tariff line (R069)")
            value = _money(customs_value_eur(item["amountInvoiced"], rate), f"{where}: value")
            item_rate = _rate(
                duty_rate(line, item["countryOfOrigin"], item["preference"]),
                f"{where}: duty rate of line {line.commodity_prefix}",
            )
            # scaleb(-2) divides by 100 exactly, whatever the precision.
            duty = _money(round_half_up((value * item_rate).scaleb(-2)), f"{where}: duty")
            vat = _money(round_half_up(((value + duty) * vat_rate).scaleb(-2)), f"{where}: VAT")
            items.append(
                {
                    "sequenceNumber": item["sequenceNumber"],
                    "customsValueEur": value,
                    "dutyRate": item_rate,
                    "duty": duty,
                    "vatRate": vat_rate,
                    "vat": vat,
                }
            )
            total_duty += duty
            total_vat += vat
    return {
        "vatMemberState": state,
        "items": items,
        "totalDuty": _money(total_duty, "totalDuty"),
        "totalVat": _money(total_vat, "totalVat"),
    }
