"""SCO risk analysis of an accepted declaration (spec §5), as a pure function.

What it decides: which risk profiles of the reference data match (a profile matches the
declaration when all the criteria it states hold for at least one goods item, declaration-level
criteria such as the importer included), whether the declaration is randomly selected, and the
resulting control level: the highest of the matched profiles, raised to at least the configured
random-selection control when selected, never lowered.

Why random selection is a hash and not a random number: the same declaration must get the same
answer on every node, after every restart and on every replay (exactly-once processing replays
inputs), and a trader must not be able to re-roll it by lodging again under the same LRN. The draw
is compared with the rate as `Decimal` so that a rate such as 0.005 means exactly 50 in 10,000.

The customs value compared with `minCustomsValueEur` is the one of spec §6 (`duties`), so that a
profile threshold and the assessed value can never disagree by a rounding.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from streams.duties import customs_value_eur, exchange_rate
from streams.reference import CONTROL_LEVELS, ReferenceData, RiskProfile

DRAW_RANGE = 10000


def selection_draw(declarant_eori: str, lrn: str) -> int:
    """0..9999: the first 8 bytes of SHA-256(`<EORI>|<LRN>`), big-endian, modulo 10000."""
    digest = hashlib.sha256(f"{declarant_eori}|{lrn}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % DRAW_RANGE


def randomly_selected(declarant_eori: str, lrn: str, rate: Decimal) -> bool:
    """Whether the declaration falls in the random sample of `rate` (0 never, 1 always)."""
    # draw < rate × 10000 written as draw / 10000 < rate, with the quotient built from text:
    # constructing and comparing Decimals is exact, whatever the context's precision.
    return Decimal(f"{selection_draw(declarant_eori, lrn)}E-4") < rate


def _matches_item(
    profile: RiskProfile,
    item: Mapping[str, Any],
    value_eur: Decimal,
    declarant_eori: str,
    importer_eori: str,
) -> bool:
    # A criterion the profile does not state (None) holds for every item.
    if profile.origin_countries is not None and item["countryOfOrigin"] not in (
        profile.origin_countries
    ):
        return False
    if profile.commodity_prefixes is not None and not any(
        item["commodityCode"].startswith(prefix) for prefix in profile.commodity_prefixes
    ):
        return False
    if profile.min_customs_value_eur is not None and value_eur < profile.min_customs_value_eur:
        return False
    if profile.declarant_eoris is not None and declarant_eori not in profile.declarant_eoris:
        return False
    return profile.importer_eoris is None or importer_eori in profile.importer_eoris


def highest_control(*controls: str) -> str:
    """The strictest of `controls` (PHYSICAL > DOCUMENTARY > NONE); NONE for none."""
    return max(controls, key=CONTROL_LEVELS.index, default=CONTROL_LEVELS[0])


def assess_risk(declaration: Mapping[str, Any], reference: ReferenceData) -> dict[str, Any]:
    """The `risk.assessed` content of `declaration` (Avro-native form), without envelope:
    `{"control", "matchedProfiles" (sorted ids), "randomlySelected"}`."""
    declarant_eori: str = declaration["declarant"]["eori"]
    importer_eori: str = declaration["importer"]["eori"]
    rate = exchange_rate(declaration)
    items = [
        (item, customs_value_eur(item["amountInvoiced"], rate))
        for item in declaration["goodsItems"]
    ]
    matched = [
        profile
        for profile in reference.risk_profiles
        if any(
            _matches_item(profile, item, value, declarant_eori, importer_eori)
            for item, value in items
        )
    ]
    selection = reference.random_selection
    selected = randomly_selected(declarant_eori, declaration["lrn"], selection.rate)
    control = highest_control(*(p.control for p in matched))
    if selected:
        control = highest_control(control, selection.control)
    return {
        "control": control,
        "matchedProfiles": sorted(p.id for p in matched),
        "randomlySelected": selected,
    }
