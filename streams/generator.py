"""Synthetic but realistic DeclarationLodged traffic (spec §3), in the JSON form.

Used by the demo, the CLI and load tests. Everything derives from one `random.Random(seed)`:
the same arguments always give the same declarations, byte for byte, so a run can be replayed
and a surprising rejection reproduced. Nothing reads the wall clock or the global generator, and
no set is ever iterated (string hashing is randomised per process).

Valid declarations are built to pass every rule of spec §4 against the given reference data:
commodity codes are derived from the tariff lines, so an installation that adds lines gets them
used too. A small share deliberately matches a risk profile (spec §5); the other goods items are
steered clear of the profiles so that controls stay the exception, as in real traffic.

Invalid declarations are valid ones spoilt by one to three defects from `_DEFECTS`, each aimed at
a rule of spec §4 and each still type-correct for the Avro schema, so that they are rejected by
validation rather than dead-lettered by decoding. Which defect was applied is recorded nowhere.
"""

from __future__ import annotations

import math
import random
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from streams.jsonform import format_timestamp
from streams.reference import ReferenceData, RiskProfile, TariffLine

Declaration = dict[str, Any]

DEFAULT_START = datetime(2026, 4, 1, 8, 0, tzinfo=UTC)
_MAX_GAP_MS = 3000
_MAX_LRN = 22

# Shares of the traffic, per declaration unless said otherwise.
_RISK_SHARE = 0.04
_PRE_LODGED_SHARE = 0.15
_REPRESENTED_SHARE = 0.40
_EUR_SHARE = 0.50
_NO_GROSS_MASS_SHARE = 0.10
_MAIN_LINE_SHARE = 0.60  # items of one consignment tend to be of one kind
_MAIN_ORIGIN_SHARE = 0.75
_PREFERENCE_CLAIMED_SHARE = 0.90
_FREE_SAMPLE_SHARE = 0.01
_EIGHT_DIGIT_WEIGHT = 1.0  # against 4.0 for the 10-digit TARIC form
_ITEM_COUNT_WEIGHTS = (30, 20, 14, 10, 8, 7, 6, 5)  # 1..8 items
_LARGE_ITEM_SHARE = 0.05  # 9..30 items
_DEFECT_COUNT_WEIGHTS = (60, 30, 10)  # 1, 2 or 3 defects

_PROCEDURES = (("4000", 80.0), ("4200", 14.0), ("4071", 6.0))
_ORIGINS = (
    ("CN", 30.0), ("VN", 10.0), ("US", 8.0), ("TR", 8.0), ("MA", 5.0), ("BD", 6.0),
    ("JP", 5.0), ("KR", 5.0), ("IN", 8.0), ("BR", 4.0), ("CH", 4.0), ("GB", 7.0),
)  # fmt: skip

# EUR value of one unit, around spring 2026; each declaration jitters it by up to 2 %.
_RATES = {
    "USD": 0.9215, "CNY": 0.1272, "GBP": 1.1830, "JPY": 0.006120, "CHF": 1.0530,
    "KRW": 0.000680, "INR": 0.010950, "TRY": 0.025800, "HKD": 0.118000, "BRL": 0.165000,
    "MAD": 0.091500,
}  # fmt: skip
_HOME_CURRENCY = {
    "US": "USD", "CN": "CNY", "GB": "GBP", "JP": "JPY", "CH": "CHF", "KR": "KRW", "IN": "INR",
    "TR": "TRY", "BR": "BRL", "MA": "MAD",
}  # fmt: skip
_OTHER_CURRENCIES = ("USD", "USD", "USD", "HKD", "CNY", "GBP")

_SCO_OFFICES = {"FR": ("FR000730", "FR001260", "FR002300", "FR004570", "FR006300")}
_COP_OFFICES = {
    "DE": ("DE004712", "DE002651", "DE004851", "DE007452"),
    "NL": ("NL000396", "NL000854", "NL000849"),
    "BE": ("BE212000", "BE101000", "BE309000"),
    "IT": ("IT261101", "IT077100", "IT018100"),
    "ES": ("ES000801", "ES004601", "ES002801"),
    "PL": ("PL301010", "PL442010"),
    "FR": ("FR000730", "FR004570", "FR006300"),
}
_COP_WEIGHTS = {"DE": 5.0, "NL": 5.0, "BE": 4.0, "IT": 3.0, "ES": 3.0, "PL": 1.5, "AT": 1.0}
_COP_OTHER_WEIGHT = 0.4

_DOMESTIC_NAMES = (
    "Textiles du Nord SA", "Maison Import SARL", "Brûlerie Lyonnaise SAS",
    "Électroménager Rhône SAS", "Mode & Tendance Paris SAS", "Auto Import Méditerranée SA",
    "Jouets Bretagne SARL", "Informatique Loire SAS", "Maroquinerie Atlantique SARL",
    "Chaussures de Provence SA", "Horlogerie du Jura SAS", "Télécom Distribution Ouest SAS",
    "Grand Est Négoce SA", "Comptoir Normand d'Import SARL", "Sport & Loisirs Aquitaine SAS",
    "Alpes Électronique SA",
)  # fmt: skip
_FOREIGN_IMPORTERS = (
    ("DE", "Rheinland Handels GmbH"), ("DE", "Hanse Import GmbH"),
    ("DE", "Bayern Elektro Vertrieb GmbH"), ("DE", "Spielwaren Nord GmbH"),
    ("NL", "Van der Berg Trading B.V."), ("NL", "Rotterdam Distributie B.V."),
    ("NL", "Oranje Mode B.V."), ("BE", "Antwerp Goods Distribution NV"),
    ("BE", "Brabant Textiel BV"), ("BE", "Liège Commerce SA"),
)  # fmt: skip
# Customs brokers acting as representatives; "" stands for the node's own country.
_BROKERS = (
    ("", "Transit Havre Douane SAS"), ("", "Roissy Fret Services SARL"),
    ("", "Marseille Déclarations SA"), ("BE", "Scheldt Customs Brokers NV"),
    ("NL", "Schiphol Customs Agency B.V."),
)  # fmt: skip

_EORI = re.compile(r"[A-Z]{2}[0-9A-Z]{1,15}")


@dataclass(frozen=True)
class _Heading:
    """How goods of one HS heading are traded: codes, unit mass and price, usual origins."""

    goods: tuple[tuple[str, str], ...]  # (8-digit CN code, description)
    unit_kg: tuple[float, float]
    unit_eur: tuple[float, float]
    quantity: tuple[float, float]
    origins: tuple[tuple[str, float], ...]
    weight: float = 1.0


_HEADINGS: dict[str, _Heading] = {
    "0901": _Heading(
        goods=(
            ("09011100", "Green coffee beans, Arabica, not decaffeinated"),
            ("09011100", "Green coffee beans, Robusta, not decaffeinated"),
            ("09011200", "Green coffee beans, decaffeinated"),
            ("09012100", "Roasted coffee beans, not decaffeinated"),
            ("09012100", "Ground roasted coffee in capsules"),
            ("09012200", "Roasted coffee, decaffeinated"),
        ),
        unit_kg=(1.0, 1.0), unit_eur=(3.0, 14.0), quantity=(60, 6000),
        origins=(("BR", 4.0), ("VN", 3.0), ("IN", 2.0), ("CH", 1.5), ("US", 0.5)),
        weight=0.8,
    ),
    "4202": _Heading(
        goods=(
            ("42022100", "Handbags with outer surface of leather"),
            ("42022210", "Handbags of plastic sheeting"),
            ("42022290", "Handbags of textile materials"),
            ("42023100", "Wallets and purses of leather"),
            ("42029291", "Backpacks of textile materials"),
        ),
        unit_kg=(0.3, 1.5), unit_eur=(6.0, 250.0), quantity=(10, 2000),
        origins=(("CN", 6.0), ("VN", 3.0), ("IN", 2.0), ("MA", 0.5), ("TR", 0.5)),
    ),
    "6109": _Heading(
        goods=(
            ("61091000", "T-shirts of cotton, knitted"),
            ("61091000", "Cotton vests and singlets, knitted"),
            ("61099020", "T-shirts of wool, knitted"),
            ("61099090", "T-shirts of synthetic fibres, knitted"),
        ),
        unit_kg=(0.12, 0.25), unit_eur=(1.5, 12.0), quantity=(50, 5000),
        origins=(("CN", 4.0), ("BD", 4.0), ("TR", 3.0), ("VN", 2.0), ("MA", 1.5), ("IN", 2.0)),
        weight=1.3,
    ),
    "6203": _Heading(
        goods=(
            ("62034231", "Men's trousers of cotton denim"),
            ("62034235", "Men's trousers of cotton"),
            ("62034311", "Men's work trousers of synthetic fibres"),
            ("62033290", "Men's jackets of cotton"),
        ),
        unit_kg=(0.4, 0.9), unit_eur=(4.0, 30.0), quantity=(50, 3000),
        origins=(("CN", 4.0), ("BD", 3.0), ("TR", 2.0), ("MA", 2.0), ("VN", 1.5), ("IN", 1.0)),
    ),
    "6402": _Heading(
        goods=(
            ("64029100", "Footwear covering the ankle, rubber soles and uppers"),
            ("64021900", "Sports footwear with rubber soles and plastic uppers"),
            ("64022000", "Flip-flops with rubber soles"),
            ("64029910", "Sandals with plastic uppers"),
        ),
        unit_kg=(0.3, 1.0), unit_eur=(2.0, 25.0), quantity=(50, 3000),
        origins=(("CN", 6.0), ("VN", 4.0), ("IN", 1.0), ("BR", 0.5)),
    ),
    "6403": _Heading(
        goods=(
            ("64039118", "Men's leather boots"),
            ("64039996", "Women's leather shoes"),
            ("64039993", "Leather moccasins"),
        ),
        unit_kg=(0.6, 1.4), unit_eur=(12.0, 90.0), quantity=(20, 1500),
        origins=(("CN", 3.0), ("VN", 3.0), ("IN", 2.0), ("BR", 1.0), ("MA", 0.5), ("TR", 0.5)),
    ),
    "8471": _Heading(
        goods=(
            ("84713000", "Laptop computers, portable, weighing under 10 kg"),
            ("84713000", "Tablet computers"),
            ("84714100", "Desktop computers"),
            ("84716070", "Computer keyboards"),
        ),
        unit_kg=(0.5, 6.0), unit_eur=(30.0, 1500.0), quantity=(5, 500),
        origins=(("CN", 7.0), ("VN", 1.5), ("US", 1.0), ("JP", 0.5), ("KR", 0.5)),
    ),
    "8509": _Heading(
        goods=(
            ("85094000", "Kitchen stand mixers, domestic"),
            ("85094000", "Juice extractors, domestic"),
            ("85098000", "Electric floor polishers, domestic"),
        ),
        unit_kg=(2.0, 8.0), unit_eur=(20.0, 180.0), quantity=(10, 800),
        origins=(("CN", 7.0), ("TR", 1.5), ("KR", 0.5), ("US", 0.5), ("CH", 0.3)),
    ),
    "8517": _Heading(
        goods=(
            ("85171300", "Smartphones"),
            ("85171300", "Mobile phones, refurbished"),
            ("85176200", "Wi-Fi routers"),
            ("85171100", "Cordless telephone sets"),
        ),
        unit_kg=(0.15, 0.6), unit_eur=(25.0, 900.0), quantity=(10, 2000),
        origins=(("CN", 6.0), ("VN", 3.0), ("KR", 1.5), ("IN", 1.0), ("US", 0.5)),
    ),
    "8703": _Heading(
        goods=(
            ("87038010", "Passenger cars, electric motor only, new"),
            ("87032390", "Passenger cars, petrol engine 1500-3000 cm3, new"),
            ("87034010", "Passenger cars, petrol-electric hybrid, new"),
        ),
        unit_kg=(1100.0, 2400.0), unit_eur=(12000.0, 85000.0), quantity=(1, 12),
        origins=(
            ("JP", 3.0), ("KR", 3.0), ("CN", 2.0), ("US", 2.0), ("GB", 2.0), ("TR", 1.0),
            ("MA", 1.0), ("IN", 0.5),
        ),
        weight=0.4,
    ),
    "9102": _Heading(
        goods=(
            ("91021100", "Wrist-watches, battery powered, with mechanical display"),
            ("91021200", "Wrist-watches, battery powered, with digital display"),
            ("91022100", "Wrist-watches with automatic winding"),
        ),
        unit_kg=(0.05, 0.2), unit_eur=(8.0, 400.0), quantity=(10, 2000),
        origins=(("CH", 5.0), ("CN", 3.0), ("JP", 2.0), ("GB", 0.3), ("US", 0.3)),
        weight=0.7,
    ),
    "9503": _Heading(
        goods=(
            ("95030041", "Stuffed toys representing animals"),
            ("95030035", "Plastic construction sets"),
            ("95030061", "Wooden jigsaw puzzles"),
            ("95030075", "Plastic toys with electric motor"),
            ("95030085", "Die-cast metal miniature models"),
        ),
        unit_kg=(0.05, 2.0), unit_eur=(1.0, 40.0), quantity=(20, 5000),
        origins=(("CN", 8.0), ("VN", 1.5), ("IN", 0.5), ("US", 0.5), ("JP", 0.5)),
    ),
}  # fmt: skip
# Installations may add tariff lines that no heading above knows: trade them generically.
_GENERIC = _Heading(
    goods=(), unit_kg=(0.1, 10.0), unit_eur=(1.0, 200.0), quantity=(1, 1000), origins=_ORIGINS,
    weight=0.5,
)  # fmt: skip


class _Weighted:
    """A fixed weighted choice, with cumulative weights computed once for speed."""

    def __init__(self, pairs: Sequence[tuple[Any, float]]) -> None:
        self.values = [value for value, _ in pairs]
        self.cumulative: list[float] = []
        total = 0.0
        for _, weight in pairs:
            total += weight
            self.cumulative.append(total)

    def pick(self, rng: random.Random) -> Any:
        return rng.choices(self.values, cum_weights=self.cumulative)[0]


@dataclass(frozen=True)
class _Line:
    """A tariff line with the codes (and their descriptions) that fall on it."""

    line: TariffLine
    heading: _Heading
    codes: _Weighted
    origins: _Weighted


@dataclass(frozen=True)
class _Trader:
    eori: str
    name: str
    authorisation: str = ""  # CCI authorisation reference, for traders of the node's country


@dataclass
class _Item:
    """A goods item while it is being built, as so many units of one kind of goods.

    Steering towards or away from a risk profile changes the quantity, so that mass and value
    stay in proportion; `settle` then derives the declared figures (masses in g, amount in cents
    of the declaration's currency).
    """

    line: _Line
    code: str
    description: str
    origin: str
    quantity: int
    unit_g: float
    unit_cents: float  # EUR
    packing: float | None  # gross / net; None when no gross mass is declared
    free: bool = False  # samples are declared at no charge
    net_g: int = 0
    gross_g: int | None = None
    amount: int = 0

    def settle(self, currency: _Currency) -> None:
        self.net_g = max(1, round(self.quantity * self.unit_g))
        self.gross_g = None if self.packing is None else round(self.net_g * self.packing)
        eur_cents = 0 if self.free else round(self.quantity * self.unit_cents)
        self.amount = eur_cents * 10**6 // currency.rate_micro


@dataclass(frozen=True)
class _Risk:
    """The item criteria of a risk profile, prepared for matching and for avoiding."""

    profile: RiskProfile
    min_cents: int | None
    prefixes: tuple[str, ...]
    origins: tuple[str, ...]

    def matches(self, item: _Item, rate_micro: int) -> bool:
        if self.prefixes and not item.code.startswith(self.prefixes):
            return False
        if self.origins and item.origin not in self.origins:
            return False
        return self.min_cents is None or _customs_cents(item.amount, rate_micro) >= self.min_cents


@dataclass(frozen=True)
class _Currency:
    code: str
    rate_micro: int  # EUR per unit, in millionths; 10**6 for EUR


@dataclass
class _Context:
    """Everything a call derives once from its arguments: catalogue, offices, traders."""

    rng: random.Random
    reference: ReferenceData
    country: str
    lines: list[_Line]
    line_choice: _Weighted
    sco_offices: tuple[str, ...]
    cop_choice: _Weighted
    cop_offices: dict[str, tuple[str, ...]]
    domestic: list[_Trader]
    foreign: list[_Trader]
    brokers: list[_Trader]
    item_risks: list[_Risk]
    forced_risks: list[_Risk]
    currencies: list[str]
    lrn_tag: str
    watched: frozenset[str]  # EORIs named by risk profiles: kept out of the trader pool


def generate(
    count: int,
    invalid_share: float,
    seed: int,
    reference: ReferenceData,
    country: str = "FR",
    start: datetime | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield `count` declarations in the JSON form of spec §3, about `invalid_share` of them
    spoilt by one to three defects. Same arguments, same declarations."""
    if count < 0:
        raise ValueError(f"count {count} must not be negative")
    if not 0.0 <= invalid_share <= 1.0:
        raise ValueError(f"invalid_share {invalid_share} must be between 0 and 1")
    if start is None:
        start = DEFAULT_START
    if start.tzinfo is None:
        raise ValueError("start must carry a UTC offset: event time is never local time")
    if country not in reference.eu_member_states:
        raise ValueError(f"country {country!r}: an SCO node is in an EU Member State")
    if count > 10**9:
        raise ValueError(f"count {count}: at most 10**9 LRNs fit in {_MAX_LRN} characters")
    return _declarations(_context(seed, reference, country), count, invalid_share, start)


def _declarations(
    ctx: _Context, count: int, invalid_share: float, start: datetime
) -> Iterator[Declaration]:
    rng = ctx.rng
    offset_ms = 0
    for number in range(1, count + 1):
        declaration = _declaration(ctx, number, start + timedelta(milliseconds=offset_ms))
        # Drawn for every declaration, so the share is independent of what else was drawn.
        if rng.random() < invalid_share:
            _spoil(ctx, declaration)
        yield declaration
        offset_ms += rng.randint(0, _MAX_GAP_MS)


# --- the per-call context -----------------------------------------------------------------


def _context(seed: int, reference: ReferenceData, country: str) -> _Context:
    rng = random.Random(seed)
    # First draw: it makes LRNs of different seeds differ (2**40 tags) even where the running
    # numbers coincide, so two runs can be lodged into the same node.
    lrn_tag = f"{rng.getrandbits(40):010X}"
    risks = [_risk(profile) for profile in reference.risk_profiles]
    watched = frozenset(
        eori
        for profile in reference.risk_profiles
        for eori in sorted((profile.declarant_eoris or set()) | (profile.importer_eoris or set()))
    )
    lines = _lines(rng, reference)
    if not lines:
        raise ValueError("the tariff has no line for which a valid commodity code exists")
    members = sorted(reference.eu_member_states - {country})
    cop_offices = {c: _COP_OFFICES.get(c) or _made_up_offices(rng, c) for c in members}
    ctx = _Context(
        rng=rng,
        reference=reference,
        country=country,
        lines=lines,
        line_choice=_Weighted([(line, line.heading.weight) for line in lines]),
        sco_offices=_SCO_OFFICES.get(country) or _made_up_offices(rng, country),
        cop_choice=_Weighted([(c, _COP_WEIGHTS.get(c, _COP_OTHER_WEIGHT)) for c in members]),
        cop_offices=cop_offices,
        domestic=[],
        foreign=[],
        brokers=[],
        item_risks=[r for r in risks if _item_only(r.profile)],
        forced_risks=[],
        currencies=[c for c in sorted(_RATES) if c in reference.currencies],
        lrn_tag=lrn_tag,
        watched=watched,
    )
    ctx.forced_risks = [r for r in risks if _can_force(ctx, r)]
    ctx.domestic = [_domestic_trader(ctx, name) for name in _DOMESTIC_NAMES]
    ctx.foreign = [_Trader(_new_eori(ctx, cc), name) for cc, name in _FOREIGN_IMPORTERS]
    ctx.brokers = [_Trader(_new_eori(ctx, cc or country), name) for cc, name in _BROKERS]
    return ctx


def _made_up_offices(rng: random.Random, country: str) -> tuple[str, ...]:
    return tuple(f"{country}{rng.randrange(1, 10**6):06d}" for _ in range(3))


def _lines(rng: random.Random, reference: ReferenceData) -> list[_Line]:
    """Every tariff line that a valid code can fall on, with the codes that do."""
    codes: dict[str, list[tuple[tuple[str, str], float]]] = {}
    for heading in _HEADINGS.values():
        for cn8, description in heading.goods:
            for code, weight in ((cn8 + "00", 4.0), (cn8, _EIGHT_DIGIT_WEIGHT)):
                line = reference.tariff_line(code)
                if line is not None:
                    codes.setdefault(line.commodity_prefix, []).append(
                        ((code, description), weight)
                    )
    result: list[_Line] = []
    for line in reference.tariff:
        heading = _HEADINGS.get(line.commodity_prefix[:4], _GENERIC)
        found = codes.get(line.commodity_prefix) or _padded_code(rng, reference, line, heading)
        if not found:
            continue  # e.g. a chapter-77 prefix: no valid code can use it
        origins = [(o, w) for o, w in heading.origins if o in reference.countries]
        result.append(_Line(line, heading, _Weighted(found), _Weighted(origins or _ORIGINS)))
    return result


def _padded_code(
    rng: random.Random, reference: ReferenceData, line: TariffLine, heading: _Heading
) -> list[tuple[tuple[str, str], float]]:
    """A code for a line no known goods fall on, padded so that this line is its longest."""
    prefix = line.commodity_prefix
    description = next(
        (d for c, d in heading.goods if c.startswith(prefix[:8])),
        heading.goods[0][1] if heading.goods else f"Goods of heading {prefix[:4]}",
    )
    for attempt in range(200):
        pad = "0" * 10 if attempt == 0 else f"{rng.randrange(10**10):010d}"
        code = (prefix + pad)[:10]
        if _valid_chapter(code) and reference.tariff_line(code) is line:
            return [((code, description), 1.0)]
    return []


def _valid_chapter(code: str) -> bool:
    chapter = int(code[:2])
    return 1 <= chapter <= 97 and chapter != 77


def _risk(profile: RiskProfile) -> _Risk:
    return _Risk(
        profile=profile,
        min_cents=(
            int(profile.min_customs_value_eur * 100)
            if profile.min_customs_value_eur is not None
            else None
        ),
        prefixes=profile.commodity_prefixes or (),
        origins=tuple(sorted(profile.origin_countries or ())),
    )


def _item_only(profile: RiskProfile) -> bool:
    # Traders of the generated pool are never on a profile's lists, so only profiles without
    # party criteria can match by accident.
    return profile.declarant_eoris is None and profile.importer_eoris is None


def _can_force(ctx: _Context, risk: _Risk) -> bool:
    profile = risk.profile
    if risk.prefixes and not _codes_under(ctx, risk.prefixes):
        return False
    if risk.origins and not [o for o in risk.origins if o in ctx.reference.countries]:
        return False
    return all(
        any(_acceptable_eori(ctx, e) for e in sorted(eoris))
        for eoris in (profile.declarant_eoris, profile.importer_eoris)
        if eoris is not None
    )


def _codes_under(ctx: _Context, prefixes: tuple[str, ...]) -> list[tuple[_Line, str, str]]:
    return [
        (line, code, description)
        for line in ctx.lines
        for code, description in line.codes.values
        if code.startswith(prefixes)
    ]


def _acceptable_eori(ctx: _Context, eori: str) -> bool:
    """Whether a listed EORI would pass R020/R021, so that a risky declaration stays valid."""
    if not _EORI.fullmatch(eori) or eori[:2] not in ctx.reference.countries:
        return False
    digits = eori[2:]
    if eori[:2] == "FR" and digits.isdigit():
        return len(digits) == 9 and _luhn_digit(digits[:8]) == digits[8]
    return True


# --- traders -----------------------------------------------------------------------------


def _luhn_digit(payload: str) -> str:
    total = 0
    for position, char in enumerate(reversed(payload)):
        value = ord(char) - 48
        if position % 2 == 0:  # doubled once the check digit is appended on the right
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return str(-total % 10)


def _siren(rng: random.Random) -> str:
    # SIRENs of companies start with 3-9; 1 and 2 are for individuals and public bodies.
    payload = f"{rng.randint(3, 9)}{rng.randrange(10**7):07d}"
    return payload + _luhn_digit(payload)


def _eori_candidate(rng: random.Random, country: str) -> str:
    if country == "FR":
        return "FR" + _siren(rng)
    if country == "DE":
        length = rng.randint(12, 15)
        return f"DE{rng.randrange(10 ** (length - 1), 10**length)}"
    if country == "BE":
        return f"BE0{rng.randrange(2 * 10**8, 10**9)}"  # enterprise numbers start 0
    if country == "NL":
        return f"NL{rng.randrange(10**8, 10**9)}"
    return f"{country}{rng.randrange(10**9, 10**10)}"


def _new_eori(ctx: _Context, country: str) -> str:
    while True:
        eori = _eori_candidate(ctx.rng, country)
        if eori not in ctx.watched:
            return eori


def _domestic_trader(ctx: _Context, name: str) -> _Trader:
    reference = f"{ctx.country}CCL{ctx.rng.randint(2019, 2026)}{ctx.rng.randrange(10**6):06d}"
    return _Trader(_new_eori(ctx, ctx.country), name, reference)


# --- one declaration ---------------------------------------------------------------------


def _declaration(ctx: _Context, number: int, occurred: datetime) -> Declaration:
    rng = ctx.rng
    event_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    main_line: _Line = ctx.line_choice.pick(rng)
    main_origin: str = main_line.origins.pick(rng)
    currency = _currency(ctx, main_origin)
    items = _items(ctx, main_line, main_origin, currency)
    declarant, importer = _parties(ctx)
    # The CCI authorisation is held by a trader of the node's country: the declarant, or an
    # importer established there.
    holder_is_importer = (
        importer in ctx.domestic and importer is not declarant and rng.random() < 0.4
    )
    if ctx.forced_risks and rng.random() < _RISK_SHARE:
        declarant, importer = _force_risk(ctx, items, currency, declarant, importer)
    procedure = _pick(rng, _PROCEDURES)
    cop_country: str = ctx.cop_choice.pick(rng)
    additional = "D" if rng.random() < _PRE_LODGED_SHARE else "A"
    return {
        "eventId": event_id,
        "occurredAt": format_timestamp(occurred),
        "lrn": f"LRN{ctx.lrn_tag}{number:07d}",
        "declarationType": "IM",
        "additionalDeclarationType": additional,
        "supervisingOffice": rng.choice(ctx.sco_offices),
        "presentationOffice": rng.choice(ctx.cop_offices[cop_country]),
        "declarant": {"eori": declarant.eori, "name": declarant.name},
        "importer": {"eori": importer.eori, "name": importer.name},
        "representative": _representative(ctx),
        "authorisation": {
            "type": "CCL",
            "reference": (importer if holder_is_importer else declarant).authorisation,
            "holderEori": (importer if holder_is_importer else declarant).eori,
        },
        "currency": currency.code,
        "exchangeRate": None if currency.code == "EUR" else _fixed(currency.rate_micro, 6),
        "totalAmountInvoiced": _fixed(sum(item.amount for item in items), 2),
        "goodsItems": [
            _item_json(rng, sequence, item, procedure)
            for sequence, item in enumerate(items, start=1)
        ],
    }


def _pick(rng: random.Random, pairs: Sequence[tuple[str, float]]) -> str:
    return rng.choices([v for v, _ in pairs], [w for _, w in pairs])[0]


def _parties(ctx: _Context) -> tuple[_Trader, _Trader]:
    rng = ctx.rng
    declarant = rng.choice(ctx.domestic)
    roll = rng.random()
    if roll < 0.55:
        return declarant, declarant
    if roll < 0.80:
        return declarant, rng.choice(ctx.domestic)
    return declarant, rng.choice(ctx.foreign)


def _representative(ctx: _Context) -> dict[str, Any] | None:
    rng = ctx.rng
    if rng.random() >= _REPRESENTED_SHARE:
        return None
    return {"eori": rng.choice(ctx.brokers).eori, "status": 2 if rng.random() < 0.6 else 3}


def _currency(ctx: _Context, main_origin: str) -> _Currency:
    rng = ctx.rng
    if rng.random() < _EUR_SHARE or not ctx.currencies:
        return _Currency("EUR", 10**6)
    home = _HOME_CURRENCY.get(main_origin)
    code = home if home in ctx.currencies and rng.random() < 0.5 else None
    if code is None:
        code = rng.choice([c for c in _OTHER_CURRENCIES if c in ctx.currencies] or ctx.currencies)
    rate = round(_RATES[code] * 10**6 * rng.uniform(0.98, 1.02))
    return _Currency(code, max(rate, 1))


def _items(ctx: _Context, main_line: _Line, main_origin: str, currency: _Currency) -> list[_Item]:
    rng = ctx.rng
    if rng.random() < _LARGE_ITEM_SHARE:
        count = rng.randint(9, 30)
    else:
        count = rng.choices(range(1, 9), _ITEM_COUNT_WEIGHTS)[0]
    items: list[_Item] = []
    for _ in range(count):
        if rng.random() < _MAIN_LINE_SHARE:
            line = main_line
            origin = main_origin if rng.random() < _MAIN_ORIGIN_SHARE else line.origins.pick(rng)
        else:
            line = ctx.line_choice.pick(rng)
            origin = line.origins.pick(rng)
        item = _item(rng, line, origin, currency)
        _steer_clear(ctx, item, currency)
        items.append(item)
    return items


def _log_uniform(rng: random.Random, bounds: tuple[float, float]) -> float:
    low, high = bounds
    return float(low * (high / low) ** rng.random())


def _item(rng: random.Random, line: _Line, origin: str, currency: _Currency) -> _Item:
    heading = line.heading
    code, description = line.codes.pick(rng)
    item = _Item(
        line=line,
        code=code,
        description=description,
        origin=origin,
        quantity=max(1, round(_log_uniform(rng, heading.quantity))),
        unit_g=rng.uniform(*heading.unit_kg) * 1000,
        unit_cents=_log_uniform(rng, heading.unit_eur) * 100,
        packing=None if rng.random() < _NO_GROSS_MASS_SHARE else rng.uniform(1.02, 1.25),
        free=rng.random() < _FREE_SAMPLE_SHARE,
    )
    item.settle(currency)
    return item


def _customs_cents(amount: int, rate_micro: int) -> int:
    """Customs value in EUR cents, rounded half-up as spec §6 does."""
    return (amount * rate_micro + 500_000) // 10**6


def _steer_clear(ctx: _Context, item: _Item, currency: _Currency) -> None:
    """Keep an ordinary item out of the risk profiles: only `_force_risk` should hit them."""
    for risk in ctx.item_risks:
        if not risk.matches(item, currency.rate_micro):
            continue
        if risk.min_cents is not None:
            _value_below(item, currency, risk.min_cents * ctx.rng.uniform(0.2, 0.9))
        elif risk.origins:
            others = [(o, w) for o, w in item.line.heading.origins if o not in risk.origins]
            others = others or [(o, w) for o, w in _ORIGINS if o not in risk.origins]
            item.origin = _pick(ctx.rng, others) if others else item.origin
        # A profile on a commodity alone targets all such goods: nothing to steer.


def _value_below(item: _Item, currency: _Currency, target_cents: float) -> None:
    item.quantity = max(1, int(target_cents // item.unit_cents))
    if item.quantity * item.unit_cents > target_cents:  # one unit alone is worth more
        item.unit_cents = target_cents / item.quantity
    item.settle(currency)


def _value_above(item: _Item, currency: _Currency, min_cents: int, target_cents: float) -> None:
    item.free = False
    item.quantity = max(1, math.ceil(target_cents / item.unit_cents))
    item.settle(currency)
    # Rounding to cents of a weak currency could leave the customs value a hair short.
    while _customs_cents(item.amount, currency.rate_micro) < min_cents:
        item.quantity += 1
        item.settle(currency)


def _force_risk(
    ctx: _Context,
    items: list[_Item],
    currency: _Currency,
    declarant: _Trader,
    importer: _Trader,
) -> tuple[_Trader, _Trader]:
    """Make one item (or the parties) match a risk profile; the rest of the data stays valid."""
    rng = ctx.rng
    risk: _Risk = rng.choice(ctx.forced_risks)
    profile = risk.profile
    index = rng.randrange(len(items))
    item = items[index]
    if risk.prefixes:
        line, code, description = rng.choice(_codes_under(ctx, risk.prefixes))
        item = _item(rng, line, item.origin, currency)
        item.code, item.description = code, description
    if risk.origins:
        item.origin = rng.choice([o for o in risk.origins if o in ctx.reference.countries])
    if risk.min_cents is not None:
        _value_above(item, currency, risk.min_cents, risk.min_cents * rng.uniform(1.05, 2.5))
    items[index] = item
    if profile.declarant_eoris is not None:
        eori = rng.choice([e for e in sorted(profile.declarant_eoris) if _acceptable_eori(ctx, e)])
        declarant = _Trader(eori, declarant.name, declarant.authorisation)
    if profile.importer_eoris is not None:
        eori = rng.choice([e for e in sorted(profile.importer_eoris) if _acceptable_eori(ctx, e)])
        importer = _Trader(eori, importer.name, importer.authorisation)
    return declarant, importer


def _preference(rng: random.Random, item: _Item) -> str:
    if item.origin in item.line.line.preferential and rng.random() < _PREFERENCE_CLAIMED_SHARE:
        return "300"
    return "100"


def _item_json(rng: random.Random, sequence: int, item: _Item, procedure: str) -> dict[str, Any]:
    # The preference draw happens here so that the steering above sees the final origin.
    return {
        "sequenceNumber": sequence,
        "commodityCode": item.code,
        "description": item.description,
        "procedureCode": procedure,
        "countryOfOrigin": item.origin,
        "preference": _preference(rng, item),
        "netMass": _fixed(item.net_g, 3),
        "grossMass": None if item.gross_g is None else _fixed(item.gross_g, 3),
        "amountInvoiced": _fixed(item.amount, 2),
    }


def _fixed(units: int, scale: int) -> str:
    """An integer count of 10**-scale units as a decimal string with exactly `scale` places."""
    whole, fraction = divmod(abs(units), 10**scale)
    return f"{'-' if units < 0 else ''}{whole}.{fraction:0{scale}d}"


# --- defects -----------------------------------------------------------------------------

Defect = Callable[[_Context, Declaration], None]


def _spoil(ctx: _Context, declaration: Declaration) -> None:
    count = ctx.rng.choices((1, 2, 3), _DEFECT_COUNT_WEIGHTS)[0]
    for defect in ctx.rng.sample(_DEFECTS, count):
        defect(ctx, declaration)


def _lrn_with_space(ctx: _Context, d: Declaration) -> None:
    d["lrn"] = d["lrn"][:3] + " " + d["lrn"][3:]


def _lrn_too_long(ctx: _Context, d: Declaration) -> None:
    d["lrn"] = (d["lrn"] + "-AMENDED-COPY").ljust(_MAX_LRN + 1, "0")


def _export_type(ctx: _Context, d: Declaration) -> None:
    d["declarationType"] = "EX"


def _unknown_additional_type(ctx: _Context, d: Declaration) -> None:
    d["additionalDeclarationType"] = "X"


def _replace_eori(ctx: _Context, d: Declaration, eori: str) -> None:
    """Give a wrong EORI to one party; a trader appearing in several roles keeps one EORI."""
    roles = ["declarant", "importer", "holder"]
    if d["representative"] is not None:
        roles.append("representative")
    role = ctx.rng.choice(roles)
    if role == "representative":
        d["representative"]["eori"] = eori
        return
    authorisation = d["authorisation"]
    if role == "holder":
        authorisation["holderEori"] = eori
        return
    old = d[role]["eori"]
    for party in (d["declarant"], d["importer"]):
        if party["eori"] == old:
            party["eori"] = eori
    if authorisation["holderEori"] == old:
        authorisation["holderEori"] = eori


def _siret_eori(ctx: _Context, d: Declaration) -> None:
    # SIRET = SIREN + the 5-digit establishment number: the legacy form R021 refuses.
    _replace_eori(ctx, d, f"FR{_siren(ctx.rng)}{ctx.rng.randrange(1, 10**5):05d}")


def _bad_check_digit_eori(ctx: _Context, d: Declaration) -> None:
    siren = _siren(ctx.rng)
    # Luhn catches every single-digit change, so any other last digit is wrong.
    wrong = (int(siren[8]) + ctx.rng.randint(1, 9)) % 10
    _replace_eori(ctx, d, f"FR{siren[:8]}{wrong}")


def _unknown_country_eori(ctx: _Context, d: Declaration) -> None:
    _replace_eori(ctx, d, f"XX{ctx.rng.randrange(10**8, 10**12)}")


def _wrong_authorisation_type(ctx: _Context, d: Declaration) -> None:
    d["authorisation"]["type"] = ctx.rng.choice(("ABC", "CGU", "ccl"))


def _empty_authorisation_reference(ctx: _Context, d: Declaration) -> None:
    d["authorisation"]["reference"] = ""


def _stranger_holder(ctx: _Context, d: Declaration) -> None:
    parties = {d["declarant"]["eori"], d["importer"]["eori"]}
    strangers = [t.eori for t in ctx.domestic if t.eori not in parties]
    d["authorisation"]["holderEori"] = ctx.rng.choice(strangers)


def _representative_status(ctx: _Context, d: Declaration) -> None:
    if d["representative"] is None:
        d["representative"] = {"eori": ctx.rng.choice(ctx.brokers).eori, "status": 1}
    else:
        d["representative"]["status"] = ctx.rng.choice((1, 4))


def _foreign_supervising_office(ctx: _Context, d: Declaration) -> None:
    taken = {ctx.country, d["presentationOffice"][:2]}
    country = ctx.rng.choice([c for c in sorted(ctx.cop_offices) if c not in taken])
    d["supervisingOffice"] = ctx.rng.choice(ctx.cop_offices[country])


def _presentation_outside_eu(ctx: _Context, d: Declaration) -> None:
    offices = ("CH001234", "GB000060", "NO000123", "TR340100")
    eu = ctx.reference.eu_member_states
    d["presentationOffice"] = ctx.rng.choice([o for o in offices if o[:2] not in eu])


def _presentation_in_node_country(ctx: _Context, d: Declaration) -> None:
    offices = _COP_OFFICES.get(ctx.country) or ctx.sco_offices
    d["presentationOffice"] = ctx.rng.choice(offices)


def _unknown_currency(ctx: _Context, d: Declaration) -> None:
    d["currency"] = "XYZ"


def _eur_with_rate(ctx: _Context, d: Declaration) -> None:
    d["currency"], d["exchangeRate"] = "EUR", "1.100000"


def _missing_rate(ctx: _Context, d: Declaration) -> None:
    if d["currency"] == "EUR":
        d["currency"] = "USD"
    d["exchangeRate"] = None


def _total_off_by_a_cent(ctx: _Context, d: Declaration) -> None:
    d["totalAmountInvoiced"] = str(Decimal(d["totalAmountInvoiced"]) + Decimal("0.01"))


def _no_items(ctx: _Context, d: Declaration) -> None:
    d["goodsItems"], d["totalAmountInvoiced"] = [], "0.00"


def _swapped_sequence(ctx: _Context, d: Declaration) -> None:
    items = d["goodsItems"]
    if len(items) == 1:
        items[0]["sequenceNumber"] = 2
    elif items:
        i = ctx.rng.randrange(len(items) - 1)
        items[i]["sequenceNumber"], items[i + 1]["sequenceNumber"] = i + 2, i + 1


def _on_an_item(change: Callable[[_Context, dict[str, Any]], None]) -> Defect:
    def defect(ctx: _Context, d: Declaration) -> None:
        # With no items left (another defect took them) R060 already fails.
        if d["goodsItems"]:
            change(ctx, ctx.rng.choice(d["goodsItems"]))

    defect.__name__ = change.__name__
    return defect


def _chapter_77(ctx: _Context, item: dict[str, Any]) -> None:
    item["commodityCode"] = "77" + item["commodityCode"][2:]


def _nine_digit_code(ctx: _Context, item: dict[str, Any]) -> None:
    item["commodityCode"] = (item["commodityCode"] + "0")[:9]


def _code_without_line(ctx: _Context, item: dict[str, Any]) -> None:
    # Beer, spirits, shrimps, paintings: real codes the default tariff has no line for.
    candidates = ("2203000000", "2208301100", "0306171000", "9701100000")
    free = [c for c in candidates if ctx.reference.tariff_line(c) is None]
    item["commodityCode"] = ctx.rng.choice(free) if free else "7700000000"


def _procedure_outside_cci(ctx: _Context, item: dict[str, Any]) -> None:
    item["procedureCode"] = ctx.rng.choice(("1000", "2100", "400"))


def _unknown_origin(ctx: _Context, item: dict[str, Any]) -> None:
    item["countryOfOrigin"] = "ZZ"


def _zero_net_mass(ctx: _Context, item: dict[str, Any]) -> None:
    item["netMass"] = "0.000"


def _gross_below_net(ctx: _Context, item: dict[str, Any]) -> None:
    net = round(Decimal(item["netMass"]) * 1000)
    if net < 2:
        net = 500
    item["netMass"], item["grossMass"] = _fixed(net, 3), _fixed(net * 9 // 10, 3)


def _negative_amount(ctx: _Context, d: Declaration) -> None:
    if not d["goodsItems"]:
        return
    item = ctx.rng.choice(d["goodsItems"])
    old = Decimal(item["amountInvoiced"])
    new = -old if old > 0 else Decimal("-1.00")
    item["amountInvoiced"] = str(new)
    # The total follows the items, so that R066 is the only rule this defect breaks.
    d["totalAmountInvoiced"] = str(Decimal(d["totalAmountInvoiced"]) + new - old)


def _empty_description(ctx: _Context, item: dict[str, Any]) -> None:
    item["description"] = ""


def _long_description(ctx: _Context, item: dict[str, Any]) -> None:
    text = item["description"] or "Goods"
    item["description"] = ("; ".join([text] * (600 // len(text) + 2)))[:600]


def _unknown_preference(ctx: _Context, item: dict[str, Any]) -> None:
    item["preference"] = ctx.rng.choice(("400", "000", "30"))


_DEFECTS: tuple[Defect, ...] = (
    _lrn_with_space,
    _lrn_too_long,
    _export_type,
    _unknown_additional_type,
    _siret_eori,
    _bad_check_digit_eori,
    _unknown_country_eori,
    _wrong_authorisation_type,
    _empty_authorisation_reference,
    _stranger_holder,
    _representative_status,
    _foreign_supervising_office,
    _presentation_outside_eu,
    _presentation_in_node_country,
    _unknown_currency,
    _eur_with_rate,
    _missing_rate,
    _total_off_by_a_cent,
    _no_items,
    _swapped_sequence,
    _on_an_item(_chapter_77),
    _on_an_item(_nine_digit_code),
    _on_an_item(_code_without_line),
    _on_an_item(_procedure_outside_cci),
    _on_an_item(_unknown_origin),
    _on_an_item(_zero_net_mass),
    _on_an_item(_gross_below_net),
    _negative_amount,
    _on_an_item(_empty_description),
    _on_an_item(_long_description),
    _on_an_item(_unknown_preference),
)
