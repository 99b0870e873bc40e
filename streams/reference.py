"""Reference data (spec §7): countries, EU Member States and VAT rates, currencies, tariff lines,
risk profiles.

Files are YAML with decimals written as strings so that no rate passes through binary floating
point. Every file is checksummed at load so that the logs say exactly which data a decision used.
A wrong file raises `ReferenceDataError` naming the file and the entry: a worker must refuse to
start on reference data it cannot trust rather than decide on part of it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import pycountry
import yaml

log = logging.getLogger(__name__)

DEFAULT_REFERENCE_DIR = Path(__file__).resolve().parent.parent / "reference"

CONTROL_LEVELS = ("NONE", "DOCUMENTARY", "PHYSICAL")


class ReferenceDataError(Exception):
    """A reference file is missing or malformed; the message names the file and the entry."""


@dataclass(frozen=True)
class TariffLine:
    commodity_prefix: str
    erga_omnes: Decimal
    preferential: Mapping[str, Decimal] = field(default_factory=dict)


@dataclass(frozen=True)
class RiskProfile:
    id: str
    control: str
    origin_countries: frozenset[str] | None = None
    commodity_prefixes: tuple[str, ...] | None = None
    min_customs_value_eur: Decimal | None = None
    declarant_eoris: frozenset[str] | None = None
    importer_eoris: frozenset[str] | None = None
    description: str = ""


@dataclass(frozen=True)
class RandomSelection:
    rate: Decimal
    control: str


@dataclass(frozen=True)
class ReferenceData:
    countries: frozenset[str]
    currencies: frozenset[str]
    vat_rates: Mapping[str, Decimal]
    tariff: tuple[TariffLine, ...]
    risk_profiles: tuple[RiskProfile, ...]
    random_selection: RandomSelection
    checksums: Mapping[str, str]

    @property
    def eu_member_states(self) -> frozenset[str]:
        return frozenset(self.vat_rates)

    def tariff_line(self, commodity_code: str) -> TariffLine | None:
        """The line with the longest prefix that the code starts with (spec §6), if any."""
        best: TariffLine | None = None
        for line in self.tariff:
            if commodity_code.startswith(line.commodity_prefix) and (
                best is None or len(line.commodity_prefix) > len(best.commodity_prefix)
            ):
                best = line
        return best


def iso_countries() -> frozenset[str]:
    return frozenset(c.alpha_2 for c in pycountry.countries)


def iso_currencies() -> frozenset[str]:
    return frozenset(c.alpha_3 for c in pycountry.currencies)


def _decimal(value: Any, where: str) -> Decimal:
    if not isinstance(value, str):
        raise ReferenceDataError(f"{where}: {value!r} must be a decimal written as a string")
    try:
        result = Decimal(value)
    except InvalidOperation:
        raise ReferenceDataError(f"{where}: {value!r} is not a decimal number") from None
    if not result.is_finite() or result < 0:
        raise ReferenceDataError(f"{where}: {value!r} must be a finite number >= 0")
    return result


def _read_yaml(path: Path) -> tuple[Any, str]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ReferenceDataError(f"{path}: cannot be read ({exc.strerror})") from None
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ReferenceDataError(f"{path}: not valid YAML ({exc})") from None
    return data, hashlib.sha256(raw).hexdigest()


def _load_vat(path: Path, countries: frozenset[str]) -> dict[str, Decimal]:
    data, _ = _read_yaml(path)
    if not isinstance(data, dict) or not data:
        raise ReferenceDataError(f"{path}: expected a mapping of Member State code to VAT rate")
    rates: dict[str, Decimal] = {}
    for code, rate in data.items():
        if code not in countries:
            raise ReferenceDataError(f"{path}: entry {code!r} is not an ISO 3166-1 alpha-2 code")
        rates[code] = _decimal(rate, f"{path}: entry {code}")
    return rates


def _load_tariff(path: Path, countries: frozenset[str]) -> tuple[TariffLine, ...]:
    data, _ = _read_yaml(path)
    lines = data.get("lines") if isinstance(data, dict) else None
    if not isinstance(lines, list):
        raise ReferenceDataError(f"{path}: expected a top-level 'lines' list")
    result: list[TariffLine] = []
    seen: set[str] = set()
    for index, entry in enumerate(lines):
        where = f"{path}: lines[{index}]"
        if not isinstance(entry, dict):
            raise ReferenceDataError(f"{where}: expected a mapping")
        prefix = entry.get("commodityPrefix")
        if not isinstance(prefix, str) or not prefix.isdigit() or not 2 <= len(prefix) <= 10:
            raise ReferenceDataError(f"{where}: commodityPrefix {prefix!r} must be 2-10 digits")
        if prefix in seen:
            raise ReferenceDataError(f"{where}: commodityPrefix {prefix} appears twice")
        seen.add(prefix)
        where = f"{path}: line {prefix}"
        preferential_raw = entry.get("preferential") or {}
        if not isinstance(preferential_raw, dict):
            raise ReferenceDataError(f"{where}: preferential must map origin countries to rates")
        preferential: dict[str, Decimal] = {}
        for origin, rate in preferential_raw.items():
            if origin not in countries:
                raise ReferenceDataError(f"{where}: origin {origin!r} is not an ISO country code")
            preferential[origin] = _decimal(rate, f"{where}: preferential {origin}")
        result.append(
            TariffLine(
                prefix, _decimal(entry.get("ergaOmnes"), f"{where}: ergaOmnes"), preferential
            )
        )
    return tuple(result)


def _control(value: Any, where: str) -> str:
    if value not in CONTROL_LEVELS:
        raise ReferenceDataError(f"{where}: control {value!r} must be one of {CONTROL_LEVELS}")
    return str(value)


def _str_list(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ReferenceDataError(f"{where}: expected a non-empty list of strings")
    return list(value)


def _load_risk(path: Path) -> tuple[tuple[RiskProfile, ...], RandomSelection]:
    data, _ = _read_yaml(path)
    if not isinstance(data, dict) or not isinstance(data.get("profiles"), list):
        raise ReferenceDataError(f"{path}: expected a top-level 'profiles' list")
    known = {
        "id", "description", "control", "originCountries", "commodityPrefixes",
        "minCustomsValueEur", "declarantEoris", "importerEoris",
    }  # fmt: skip
    profiles: list[RiskProfile] = []
    ids: set[str] = set()
    for index, entry in enumerate(data["profiles"]):
        where = f"{path}: profiles[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
            raise ReferenceDataError(f"{where}: expected a mapping with a string 'id'")
        where = f"{path}: profile {entry['id']}"
        if entry["id"] in ids:
            raise ReferenceDataError(f"{where}: id appears twice")
        ids.add(entry["id"])
        unknown = set(entry) - known
        if unknown:
            # An unknown criterion would silently match everything: refuse it.
            raise ReferenceDataError(f"{where}: unknown criteria {sorted(unknown)}")
        min_value = entry.get("minCustomsValueEur")
        profiles.append(
            RiskProfile(
                id=entry["id"],
                control=_control(entry.get("control"), where),
                description=str(entry.get("description", "")),
                origin_countries=(
                    frozenset(_str_list(entry["originCountries"], f"{where}: originCountries"))
                    if "originCountries" in entry
                    else None
                ),
                commodity_prefixes=(
                    tuple(_str_list(entry["commodityPrefixes"], f"{where}: commodityPrefixes"))
                    if "commodityPrefixes" in entry
                    else None
                ),
                min_customs_value_eur=(
                    _decimal(min_value, f"{where}: minCustomsValueEur")
                    if min_value is not None
                    else None
                ),
                declarant_eoris=(
                    frozenset(_str_list(entry["declarantEoris"], f"{where}: declarantEoris"))
                    if "declarantEoris" in entry
                    else None
                ),
                importer_eoris=(
                    frozenset(_str_list(entry["importerEoris"], f"{where}: importerEoris"))
                    if "importerEoris" in entry
                    else None
                ),
            )
        )
    selection = data.get("randomSelection")
    if not isinstance(selection, dict):
        raise ReferenceDataError(f"{path}: expected a 'randomSelection' mapping")
    rate = _decimal(selection.get("rate"), f"{path}: randomSelection.rate")
    if rate > 1:
        raise ReferenceDataError(f"{path}: randomSelection.rate {rate} must be between 0 and 1")
    random_selection = RandomSelection(
        rate, _control(selection.get("control"), f"{path}: randomSelection")
    )
    return tuple(profiles), random_selection


FILES = ("vat-rates.yaml", "tariff.yaml", "risk-profiles.yaml")


def load_reference(directory: Path = DEFAULT_REFERENCE_DIR) -> ReferenceData:
    """Load and check every reference file of `directory`, logging each file's SHA-256."""
    countries = iso_countries()
    checksums = {name: _read_yaml(directory / name)[1] for name in FILES}
    profiles, selection = _load_risk(directory / "risk-profiles.yaml")
    data = ReferenceData(
        countries=countries,
        currencies=iso_currencies(),
        vat_rates=_load_vat(directory / "vat-rates.yaml", countries),
        tariff=_load_tariff(directory / "tariff.yaml", countries),
        risk_profiles=profiles,
        random_selection=selection,
        checksums=checksums,
    )
    for name, digest in checksums.items():
        log.info("reference data %s sha256=%s", directory / name, digest)
    log.info(
        "reference data pycountry=%s countries=%d currencies=%d",
        pycountry_version(),
        len(countries),
        len(data.currencies),
    )
    return data


def pycountry_version() -> str:
    from importlib.metadata import version

    return version("pycountry")
