"""Validation of a lodged import declaration (spec §4: rules R010-R069 and R090).

Pure functions over the decoded Avro form of DeclarationLodged: no I/O, no clock, no state. The
one fact that needs state (R090, same declarant EORI + LRN already accepted) is looked up by the
stage and passed in, so the same inputs always give the same errors.

Every rule runs on every declaration and every failure is reported, because a trader who gets
one error at a time has to lodge again for each. Field types are guaranteed by Avro decoding;
only the values are checked.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal
from typing import Any

from streams.reference import ReferenceData

# fullmatch() everywhere: `$` would also accept a trailing newline. Literal ranges such as
# [0-9] match ASCII only, unlike str.isdigit() which accepts e.g. Arabic-Indic digits.
_LRN = re.compile(r"[!-~]{1,22}")
_EORI = re.compile(r"[A-Z]{2}[0-9A-Z]{1,15}")
_FR_DIGITS = re.compile(r"FR[0-9]+")
_OFFICE = re.compile(r"[A-Z]{2}[A-Z0-9]{6}")
_COMMODITY = re.compile(r"[0-9]{8}(?:[0-9]{2})?")
_PROCEDURE = re.compile(r"[0-9]{4}")

_ADDITIONAL_TYPES = frozenset({"A", "D"})
_REPRESENTATIVE_STATUSES = frozenset({2, 3})
_CCI_PROCEDURES = frozenset({"40", "42", "44", "51", "71"})
_PREFERENCES = frozenset({"100", "200", "300"})
_MAX_ITEMS = 999
_MAX_DESCRIPTION = 512
_SIREN_DIGITS = 9

# R052 asks for the exact sum; the default context rounds at 28 digits, this one never rounds.
_EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN, traps=[])
_ZERO = Decimal(0)
_ONE = Decimal(1)

_SHOWN = 40


@dataclass(frozen=True, order=True)
class RuleError:
    code: str
    pointer: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "pointer": self.pointer, "message": self.message}


def _show(value: str) -> str:
    """A value as it may appear in a message to the trader.

    Long values are cut so that one absurd field cannot blow up the rejection event, and values
    that are not printable (control characters, lone surrogates that UTF-8 cannot encode) are
    escaped so that the rejection can always be serialised.
    """
    if value == "":
        return '""'
    if len(value) > _SHOWN:
        value = value[: _SHOWN - 3] + "..."
    return value if value.isprintable() else ascii(value)


def _luhn(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _header(declaration: Mapping[str, Any]) -> list[RuleError]:
    errors: list[RuleError] = []
    lrn = declaration["lrn"]
    if not _LRN.fullmatch(lrn):
        errors.append(
            RuleError(
                "R010",
                "/lrn",
                f"lrn {_show(lrn)}: must be 1 to 22 printable ASCII characters without spaces",
            )
        )
    declaration_type = declaration["declarationType"]
    if declaration_type != "IM":
        errors.append(
            RuleError(
                "R011",
                "/declarationType",
                f"declarationType {_show(declaration_type)}: must be IM (import)",
            )
        )
    additional = declaration["additionalDeclarationType"]
    if additional not in _ADDITIONAL_TYPES:
        errors.append(
            RuleError(
                "R012",
                "/additionalDeclarationType",
                f"additionalDeclarationType {_show(additional)}: must be A (standard) "
                "or D (pre-lodged)",
            )
        )
    return errors


def _eori(pointer: str, eori: str, countries: frozenset[str]) -> list[RuleError]:
    errors: list[RuleError] = []
    if not _EORI.fullmatch(eori):
        errors.append(
            RuleError(
                "R020",
                pointer,
                f"EORI {_show(eori)}: must be a country code followed by 1 to 15 digits "
                "or capital letters",
            )
        )
    elif eori[:2] not in countries:
        errors.append(
            RuleError(
                "R020", pointer, f"EORI {_show(eori)}: {eori[:2]} is not an ISO 3166-1 country code"
            )
        )
    # Our choice, spec silent: R021 is judged on its own, so an EORI failing both (FR + 16
    # digits) reports both codes.
    if _FR_DIGITS.fullmatch(eori):
        digits = eori[2:]
        if len(digits) != _SIREN_DIGITS:
            errors.append(
                RuleError(
                    "R021",
                    pointer,
                    f"EORI {_show(eori)}: a French EORI is FR followed by the 9-digit SIREN "
                    "(the 14-digit SIRET form is refused)",
                )
            )
        elif not _luhn(digits):
            errors.append(
                RuleError("R021", pointer, f"EORI {eori}: the SIREN check digit is not valid")
            )
    return errors


def _parties(declaration: Mapping[str, Any], reference: ReferenceData) -> list[RuleError]:
    countries = reference.countries
    declarant_eori: str = declaration["declarant"]["eori"]
    importer_eori: str = declaration["importer"]["eori"]
    representative = declaration["representative"]
    authorisation = declaration["authorisation"]
    holder: str = authorisation["holderEori"]

    errors = _eori("/declarant/eori", declarant_eori, countries)
    errors += _eori("/importer/eori", importer_eori, countries)
    if representative is not None:
        errors += _eori("/representative/eori", representative["eori"], countries)
        status = representative["status"]
        if status not in _REPRESENTATIVE_STATUSES:
            errors.append(
                RuleError(
                    "R032",
                    "/representative/status",
                    f"representative status {status}: must be 2 (direct) or 3 (indirect)",
                )
            )
    errors += _eori("/authorisation/holderEori", holder, countries)

    # Our reading of R030: each half fails at its own field, and "non-empty" means not "";
    # a reference of spaces is the authorisation register's problem, not ours.
    authorisation_type = authorisation["type"]
    if authorisation_type != "CCL":
        errors.append(
            RuleError(
                "R030",
                "/authorisation/type",
                f"authorisation type {_show(authorisation_type)}: must be CCL "
                "(centralised clearance)",
            )
        )
    if authorisation["reference"] == "":
        errors.append(
            RuleError("R030", "/authorisation/reference", "authorisation reference is empty")
        )
    if holder != declarant_eori and holder != importer_eori:
        errors.append(
            RuleError(
                "R031",
                "/authorisation/holderEori",
                f"authorisation holder {_show(holder)}: must be the declarant or the importer",
            )
        )
    return errors


def _offices(
    declaration: Mapping[str, Any], reference: ReferenceData, country: str
) -> list[RuleError]:
    errors: list[RuleError] = []
    supervising: str = declaration["supervisingOffice"]
    presentation: str = declaration["presentationOffice"]
    supervising_ok = _OFFICE.fullmatch(supervising) is not None
    presentation_ok = _OFFICE.fullmatch(presentation) is not None
    if not supervising_ok or supervising[:2] != country:
        errors.append(
            RuleError(
                "R040",
                "/supervisingOffice",
                f"supervisingOffice {_show(supervising)}: must be an office reference of "
                f"{_show(country)}",
            )
        )
    if not presentation_ok or presentation[:2] not in reference.eu_member_states:
        errors.append(
            RuleError(
                "R041",
                "/presentationOffice",
                f"presentationOffice {_show(presentation)}: must be an office reference "
                "of an EU Member State",
            )
        )
    # Our choice: the countries are only compared when both references are well formed;
    # otherwise R040/R041 already say what is wrong.
    if supervising_ok and presentation_ok and supervising[:2] == presentation[:2]:
        errors.append(
            RuleError(
                "R042",
                "/presentationOffice",
                f"presentationOffice {presentation}: must be in another Member State "
                "than the supervising office",
            )
        )
    return errors


def _amounts(
    declaration: Mapping[str, Any], reference: ReferenceData, items: Sequence[Any]
) -> list[RuleError]:
    errors: list[RuleError] = []
    currency: str = declaration["currency"]
    rate: Decimal | None = declaration["exchangeRate"]
    if currency not in reference.currencies:
        errors.append(
            RuleError("R050", "/currency", f"currency {_show(currency)}: not an ISO 4217 code")
        )
    # R051 runs even when R050 failed: an unknown currency is still "not EUR". Avro never
    # yields NaN or Infinity, but a non-finite value must fail a rule rather than raise.
    if currency == "EUR":
        if rate is not None and not (rate.is_finite() and rate == _ONE):
            errors.append(
                RuleError(
                    "R051", "/exchangeRate", f"exchangeRate {rate}: must be absent or 1 for EUR"
                )
            )
    elif rate is None:
        errors.append(
            RuleError(
                "R051", "/exchangeRate", f"exchangeRate missing: required for {_show(currency)}"
            )
        )
    elif not (rate.is_finite() and rate > _ZERO):
        errors.append(
            RuleError("R051", "/exchangeRate", f"exchangeRate {rate}: must be greater than 0")
        )

    declared: Decimal = declaration["totalAmountInvoiced"]
    total = _ZERO
    for item in items:
        total = _EXACT.add(total, item["amountInvoiced"])
    if not (declared.is_finite() and total.is_finite() and declared == total):
        errors.append(
            RuleError(
                "R052",
                "/totalAmountInvoiced",
                f"totalAmountInvoiced {declared}: differs from the sum of the items' "
                f"amountInvoiced ({total})",
            )
        )
    return errors


def _item(index: int, item: Mapping[str, Any], reference: ReferenceData) -> list[RuleError]:
    errors: list[RuleError] = []
    at = f"/goodsItems/{index}/"

    sequence = item["sequenceNumber"]
    if sequence != index + 1:
        errors.append(
            RuleError(
                "R061", at + "sequenceNumber", f"sequenceNumber {sequence}: expected {index + 1}"
            )
        )

    code: str = item["commodityCode"]
    if not _COMMODITY.fullmatch(code):
        errors.append(
            RuleError(
                "R062", at + "commodityCode", f"commodityCode {_show(code)}: must be 8 or 10 digits"
            )
        )
    else:
        chapter = int(code[:2])
        if not 1 <= chapter <= 97 or chapter == 77:
            errors.append(
                RuleError(
                    "R062",
                    at + "commodityCode",
                    f"commodityCode {code}: HS chapter {code[:2]} is not used",
                )
            )
    # Evaluated even when R062 failed: all rules run, and a code such as 9 digits may still
    # start with a tariff prefix.
    if reference.tariff_line(code) is None:
        errors.append(
            RuleError(
                "R069", at + "commodityCode", f"commodityCode {_show(code)}: no line in the tariff"
            )
        )

    procedure: str = item["procedureCode"]
    if not _PROCEDURE.fullmatch(procedure):
        errors.append(
            RuleError(
                "R063", at + "procedureCode", f"procedureCode {_show(procedure)}: must be 4 digits"
            )
        )
    elif procedure[:2] not in _CCI_PROCEDURES:
        errors.append(
            RuleError(
                "R063",
                at + "procedureCode",
                f"procedureCode {procedure}: requested procedure {procedure[:2]} is not "
                "one of 40, 42, 44, 51, 71",
            )
        )

    origin: str = item["countryOfOrigin"]
    if origin not in reference.countries:
        errors.append(
            RuleError(
                "R064",
                at + "countryOfOrigin",
                f"countryOfOrigin {_show(origin)}: not an ISO 3166-1 country code",
            )
        )

    net: Decimal = item["netMass"]
    gross: Decimal | None = item["grossMass"]
    net_ok = net.is_finite()
    if not (net_ok and net > _ZERO):
        errors.append(RuleError("R065", at + "netMass", f"netMass {net}: must be greater than 0"))
    # Both halves of R065 are judged separately, so net 0 with gross < net reports both.
    if gross is not None and (not gross.is_finite() or (net_ok and gross < net)):
        errors.append(
            RuleError(
                "R065", at + "grossMass", f"grossMass {gross}: must not be less than netMass {net}"
            )
        )

    amount: Decimal = item["amountInvoiced"]
    if not (amount.is_finite() and amount >= _ZERO):
        errors.append(
            RuleError(
                "R066", at + "amountInvoiced", f"amountInvoiced {amount}: must not be negative"
            )
        )

    description: str = item["description"]
    if not 1 <= len(description) <= _MAX_DESCRIPTION:
        errors.append(
            RuleError(
                "R067",
                at + "description",
                f"description: {len(description)} characters, must be 1 to {_MAX_DESCRIPTION}",
            )
        )

    preference: str = item["preference"]
    if preference not in _PREFERENCES:
        errors.append(
            RuleError(
                "R068",
                at + "preference",
                f"preference {_show(preference)}: must be 100, 200 or 300",
            )
        )
    return errors


def _items(items: Sequence[Any], reference: ReferenceData) -> Iterator[RuleError]:
    if not 1 <= len(items) <= _MAX_ITEMS:
        yield RuleError(
            "R060", "/goodsItems", f"goodsItems: {len(items)} items, must be 1 to {_MAX_ITEMS}"
        )
    # Our choice: the item rules still run on every item present when R060 fails, so that a
    # 1000-item declaration is not lodged again only to fail on its items.
    for index, item in enumerate(items):
        yield from _item(index, item, reference)


def _duplicate(declaration: Mapping[str, Any], already_accepted: bool) -> list[RuleError]:
    if not already_accepted:
        return []
    return [
        RuleError(
            "R090",
            "/lrn",
            f"lrn {_show(declaration['lrn'])}: a declaration of "
            f"{_show(declaration['declarant']['eori'])} with this LRN was already accepted",
        )
    ]


def _sort_key(error: RuleError) -> tuple[str, str]:
    return error.code, error.pointer


def validate(
    declaration: Mapping[str, Any],
    reference: ReferenceData,
    country: str,
    already_accepted: bool = False,
    limit: int | None = None,
) -> list[RuleError]:
    """Every failure of `declaration` against spec §4, sorted by code then pointer; [] if valid.

    `country` is this node's ISO country (R040); `already_accepted` says whether a declaration
    with the same declarant EORI and LRN was already accepted (R090). With `limit`, only the
    first `limit` failures of that order, found without holding the others: a declaration of
    100,000 bad items fails close to a million times.
    """
    items: Sequence[Any] = declaration["goodsItems"]
    errors = (
        error
        for rules in (
            _header(declaration),
            _parties(declaration, reference),
            _offices(declaration, reference, country),
            _amounts(declaration, reference, items),
            _items(items, reference),
            _duplicate(declaration, already_accepted),
        )
        for error in rules
    )
    # The spec's literal order: plain string comparison of the pointer, so "/goodsItems/10/..."
    # sorts before "/goodsItems/2/...". Campaigns compare lists element by element. Both sorts
    # are stable, so the limited list is the head of the full one.
    if limit is not None:
        return heapq.nsmallest(limit, errors, key=_sort_key)
    return sorted(errors, key=_sort_key)
