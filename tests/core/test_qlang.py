"""The NGSI-LD ``q`` language: known answers, precise errors, and a property test of
the parser and evaluator against a brute-force Python evaluation on random entities."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cityos.core.errors import BadRequestData
from cityos.core.ngsi_ld.qlang import (
    MAX_DEPTH,
    And,
    Or,
    Term,
    parse_q,
    q_attribute_names,
    q_matches,
    rename_attributes,
)

BUS = {
    "id": "urn:ngsi-ld:Vehicle:bus-7",
    "type": "Vehicle",
    "speed": {"type": "Property", "value": 55, "unitCode": "KMH",
              "observedAt": "2026-01-05T08:00:00.000000Z"},
    "fuelLevel": {"type": "Property", "value": 0.25},
    "status": [
        {"type": "Property", "value": "inService", "datasetId": "urn:ngsi-ld:Dataset:gps"},
        {"type": "Property", "value": "delayed", "datasetId": "urn:ngsi-ld:Dataset:avl"},
    ],
    "name": {"type": "Property", "value": "Bus \"7\" Airport"},
    "wheelchair": {"type": "Property", "value": True},
    "stopsServed": {"type": "Property", "value": [3, 8, 13]},
    "serviceStart": {"type": "Property", "value": "2026-01-05T06:30:00+01:00"},
    "departure": {"type": "Property", "value": "07:45:00"},
    "route": {"type": "Relationship", "object": "urn:ngsi-ld:Route:7"},
    "passengers": {"type": "Property", "value": 31,
                   "seated": {"type": "Property", "value": 20,
                              "observedAt": "2026-01-05T07:59:00.000000Z"}},
    "engine": {"type": "Property", "value": {"temperature": {"oil": 92, "water": 88},
                                             "mode": "hybrid",
                                             "faults": [{"code": "P0420"}, {"code": "P0171"}]}},
    "destination": {"type": "LanguageProperty",
                    "languageMap": {"en": "Airport", "de": "Flughafen"}},
    "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [8.5, 47.4]}},
}


@pytest.mark.parametrize("q, expected", [
    # comparisons
    ("speed==55", True), ("speed==55.0", True), ("speed!=55", False), ("speed>50", True),
    ("speed>55", False), ("speed>=55", True), ("speed<55", False), ("speed<=55", True),
    ("fuelLevel<0.3", True), ("fuelLevel>2.5e-1", False), ("speed==-55", False),
    # ranges, value lists
    ("speed==50..60", True), ("speed==56..60", False), ("speed!=50..60", False),
    ("speed==40,55,70", True), ("speed==40,70", False), ("speed!=40,70", True),
    ('name=="Bus \\"7\\" Airport"', True), ('name=="a".."c"', False), ('name=="A".."C"', True),
    # type mismatches: false for ==/</>, and a different type is unequal
    ('speed=="55"', False), ('speed!="55"', True), ('speed>"50"', False), ("wheelchair==1", False),
    ("wheelchair==true", True), ("wheelchair!=false", True), ("wheelchair==false", False),
    # multi-instance: any instance
    ('status=="delayed"', True), ('status=="inService";status=="delayed"', True),
    ('status!="delayed"', True), ('status=="cancelled"', False),
    # arrays: any element
    ("stopsServed==8", True), ("stopsServed==9", False), ("stopsServed!=8", False),
    ("stopsServed>12", True), ("stopsServed>13", False), ("stopsServed==9..12", False), ("stopsServed==10..13", True),
    # patterns
    ('name~="^Bus"', True), ('name~="(?i)airport$"', True), ('name~="^Tram"', False),
    ('name!~="^Tram"', True), ("name~=Air", True), ('speed~="5"', False), ('speed!~="5"', True),
    ('stopsServed~="8"', False),
    # existence
    ("speed", True), ("!speed", False), ("noise", False), ("!noise", True),
    ("noise!=3", False), ("noise<3", False), ("passengers.seated", True),
    ("passengers.standing", False), ("!passengers.standing", True),
    # date-times compare chronologically, quoted or not, with any offset
    ("serviceStart==2026-01-05T05:30:00Z", True),
    ('serviceStart=="2026-01-05T05:30:00.000Z"', True),
    ("serviceStart>2026-01-05T05:00:00Z", True), ("serviceStart<2026-01-05", False),
    ("serviceStart==2026-01-05..2026-01-06", True),
    ("serviceStart==2026-01-05T07:00:00+02:00..2026-01-05T07:45:00+02:00", True),
    ('serviceStart>"2026-01-05T06:00:00+00:00"', False),
    ("speed.observedAt>=2026-01-05T08:00:00Z", True),
    ("speed.observedAt>2026-01-05T08:00:00Z", False),
    ("passengers.seated.observedAt<2026-01-05T08:00:00Z", True),
    ("departure>07:30", True), ("departure<07:30:00", False), ('departure=="07:45"', True),
    ("speed>2026-01-01", False),
    # sub-attributes and members
    ("passengers.seated==20", True), ("passengers.seated>20", False),
    ('speed.unitCode=="KMH"', True), ('status.datasetId=="urn:ngsi-ld:Dataset:avl"', True),
    ('status.datasetId==urn:ngsi-ld:Dataset:gps', True),
    # compound values
    ("engine[temperature.oil]>90", True), ("engine[temperature][water]==88", True),
    ('engine[mode]=="hybrid"', True), ("engine[temperature.fuel]", False),
    ('engine[faults.code]=="P0171"', True), ('engine[mode.x]=="hybrid"', False),
    ("engine==1", False), ("engine", True),
    # relationships, language properties, geo
    ("route==urn:ngsi-ld:Route:7", True), ('route=="urn:ngsi-ld:Route:7"', True),
    ("route==urn:ngsi-ld:Route:8,urn:ngsi-ld:Route:7", True), ("route!=urn:ngsi-ld:Route:7", False),
    ('destination=="Flughafen"', True), ('destination[en]=="Airport"', True),
    ('destination[en]=="Flughafen"', False), ('location[type]=="Point"', True),
    # id and type are not attributes
    ('type=="Vehicle"', False), ("!id", True),
    # logic: ';' binds tighter than '|'
    ("speed>60;fuelLevel<1|wheelchair==true", True), ("speed>60;(fuelLevel<1|wheelchair==true)", False),
    ("speed<60;fuelLevel>1|speed>60", False), ("(speed>60|fuelLevel<1);!noise", True),
    ("((((speed==55))))", True), (" speed > 50 ; fuelLevel < 1 ", True),
])
def test_known_answers_on_a_bus(q, expected):
    assert q_matches(parse_q(q), BUS) is expected


@pytest.mark.parametrize("q, fragment", [
    ("", "the expression is empty"),
    ("   ", "the expression is empty"),
    ("speed=5", "expected an operator ('==', not '=') at character 6"),
    ("speed==", "expected a value (number, \"quoted string\", true, false, date-time or URI) "
                "at character 8, found the end"),
    ("speed==abc", "expected a value"),
    ("speed==5x", "at character 9, found 'x'"),
    ("speed 5", "expected an operator"),
    ("(speed==5", "expected ')' at character 10"),
    ("speed==5)", "expected ';', '|' or the end of the expression at character 9"),
    ("speed==5;", "expected an attribute name at character 10"),
    ("speed==5||a", "expected an attribute name at character 10"),
    ("!speed==5", "'!attr' tests that an attribute is absent"),
    ("speed<true", "after '<' (true, false and URIs only take '==' or '!=')"),
    ("speed>urn:x:y", "URIs only take '==' or '!='"),
    ("speed>1,2", "at character 8, found ','"),
    ("speed<1..5", "a range needs '==' or '!='"),
    ("speed==1..\"z\"", "are not of one kind"),
    ("speed==1..true", "a range bound at character 11"),
    ('name=="open', "the string starting at character 7 is not closed"),
    ("when==2026-13-01", "'2026-13-01' is not a valid date"),
    ("when==2026-01-01T25:00:00Z", "is not an ISO 8601 date-time"),
    ("when>25:61", "is not a valid time"),
    ('name~="(unclosed"', "is not a valid regular expression"),
    ("a[b", "expected ']' or '.'"),
    ("a.", "expected an attribute name at character 3"),
])
def test_bad_syntax_names_the_position_and_what_was_expected(q, fragment):
    with pytest.raises(BadRequestData) as caught:
        parse_q(q)
    assert caught.value.detail.startswith("q: ")
    assert fragment in caught.value.detail


def test_oversized_and_too_deeply_nested_expressions_are_refused():
    with pytest.raises(BadRequestData, match="is 4097 characters long; the limit is 4096"):
        parse_q("a" * 4097)
    assert parse_q("a" * 4096) == Term(parse_q("a" * 4096).path, "exists")
    with pytest.raises(BadRequestData, match="limit is 10"):
        parse_q("speed==12345", max_length=10)
    ok = "(" * MAX_DEPTH + "speed==55" + ")" * MAX_DEPTH
    assert q_matches(parse_q(ok), BUS)
    deep = "(" * (MAX_DEPTH + 1) + "speed==55" + ")" * (MAX_DEPTH + 1)
    with pytest.raises(BadRequestData, match=f"nested deeper than {MAX_DEPTH}"):
        parse_q(deep)
    with pytest.raises(BadRequestData, match="expected a string"):
        parse_q(None)  # type: ignore[arg-type]


def test_tree_shape_and_canonical_text():
    expr = parse_q('(a==1|b<2);c~="x|y";!d')
    assert isinstance(expr, And) and len(expr.parts) == 3
    assert isinstance(expr.parts[0], Or)
    assert str(expr) == '(a==1|b<2);c~="x|y";!d'
    # nested groups of the same kind are flattened
    assert parse_q("(a;b);c") == parse_q("a;b;c")
    assert parse_q("a|(b|c)") == parse_q("a|b|c")
    assert str(parse_q("a[b][c]>=1.5")) == "a[b.c]>=1.5"
    assert str(parse_q("a  ==  1 , 2")) == "a==1,2"


def test_attribute_names_and_renaming():
    expr = parse_q('speed>5;(status=="ok"|passengers.seated<3);!engine[mode];speed<9')
    assert q_attribute_names(expr) == {"speed", "status", "passengers", "engine"}
    renamed = rename_attributes(expr, lambda name: "https://example.org/" + name)
    assert q_attribute_names(renamed) == {"https://example.org/" + n
                                          for n in ("speed", "status", "passengers", "engine")}
    # a URI attribute name keeps its dots
    uri_term = parse_q("https://smartdatamodels.org/speed>5")
    assert q_attribute_names(uri_term) == {"https://smartdatamodels.org/speed"}
    assert q_matches(uri_term, {"https://smartdatamodels.org/speed":
                                {"type": "Property", "value": 7}})


def test_typed_literal_values_and_raw_patterns():
    entity = {"id": "urn:x", "type": "T",
              "at": {"type": "Property",
                     "value": {"@type": "DateTime", "@value": "2026-03-01T00:00:00Z"}},
              "code": {"type": "Property", "value": "AB-12"}}
    assert q_matches(parse_q("at>2026-02-28T23:59:59Z"), entity)
    assert q_matches(parse_q("(code~=^AB-\\d+$);at"), entity)
    assert not q_matches(parse_q("code~=^AB-\\d{3}$"), entity)


# --------------------------------------------------------- property-based tests
# An entity is drawn together with ``plain``: attribute name -> list of instance
# values, the shape the brute-force oracle below works on.
NAMES = ["a", "b", "ab", "ba", "Bus 7", ""]
DAYS = [datetime(2026, 1, d, h, tzinfo=UTC) for d in (1, 2, 3) for h in (0, 12)]


def _day_text(moment: datetime, style: int) -> str:
    if style == 0:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    if style == 1:
        return moment.isoformat()  # +00:00
    shifted = moment.astimezone(datetime.fromisoformat("2000-01-01T00:00:00+02:00").tzinfo)
    return shifted.isoformat()


@st.composite
def entities(draw):
    entity: dict = {"id": "urn:ngsi-ld:Thing:1", "type": "Thing"}
    plain: dict[str, list] = {}
    numbers = st.one_of(st.integers(-3, 3), st.sampled_from([-1.5, 0.5, 2.5]))
    if draw(st.booleans()):
        plain["speed"] = [draw(numbers)]
    if draw(st.booleans()):
        plain["level"] = draw(st.lists(numbers, min_size=1, max_size=3))
    if draw(st.booleans()):
        plain["name"] = [draw(st.sampled_from(NAMES))]
    if draw(st.booleans()):
        plain["tags"] = [draw(st.lists(st.integers(-3, 3), max_size=3))]
    if draw(st.booleans()):
        plain["flag"] = [draw(st.booleans())]
    for name, values in plain.items():
        instances = [{"type": "Property", "value": v} for v in values]
        if len(instances) > 1:
            for i, inst in enumerate(instances):
                inst["datasetId"] = f"urn:ngsi-ld:Dataset:{i}"
        entity[name] = instances[0] if len(instances) == 1 else instances
    if draw(st.booleans()):
        road = draw(st.integers(0, 3))
        plain["road"] = [f"urn:road:{road}"]
        entity["road"] = {"type": "Relationship", "object": f"urn:road:{road}"}
    if draw(st.booleans()):
        moment = draw(st.sampled_from(DAYS))
        plain["seen"] = [moment]
        entity["seen"] = {"type": "Property",
                          "value": _day_text(moment, draw(st.integers(0, 2)))}
    return entity, plain


def _same(x, y) -> bool:
    """Brute-force equality: bools only equal bools, numbers only numbers."""
    if isinstance(x, bool) or isinstance(y, bool):
        return type(x) is type(y) and x == y
    if isinstance(x, (int, float)) and isinstance(y, (int, float)):
        return x == y
    return type(x) is type(y) and x == y


def _elements(value) -> list:
    return value if isinstance(value, list) else [value]


def _comparable(x, y) -> bool:
    numeric = (int, float)
    if isinstance(x, bool) or isinstance(y, bool):
        return False
    return (isinstance(x, numeric) and isinstance(y, numeric)) or \
        (isinstance(x, str) and isinstance(y, str)) or \
        (isinstance(x, datetime) and isinstance(y, datetime))


ORDER = {"<": lambda x, y: x < y, "<=": lambda x, y: x <= y,
         ">": lambda x, y: x > y, ">=": lambda x, y: x >= y}


def _q_literal(value, draw) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        text = _day_text(value, draw(st.integers(0, 2)))
        return f'"{text}"' if draw(st.booleans()) else text
    if isinstance(value, str):
        if value.startswith("urn:") and draw(st.booleans()):
            return value
        return '"' + value + '"'
    return repr(value)


@st.composite
def terms(draw):
    """A term as text, with a brute-force function of ``plain`` giving its truth."""
    name = draw(st.sampled_from(["speed", "level", "name", "tags", "flag", "road", "seen",
                                 "missing"]))
    pool = {
        "speed": [-3, -1, 0, 1, 2.5, 3], "level": [-2, 0, 0.5, 2], "tags": [-1, 0, 1, 3],
        "name": NAMES, "flag": [True, False], "road": [f"urn:road:{i}" for i in range(4)],
        "seen": DAYS, "missing": [1, 2],
    }[name]
    strange = draw(st.sampled_from([7, "7", True, DAYS[0]]))  # often of the wrong type
    values = [draw(st.sampled_from(pool)) if draw(st.integers(0, 4)) else strange
              for _ in range(draw(st.integers(1, 2)))]
    kind = draw(st.sampled_from(["exists", "!exists", "==", "!=", "<", "<=", ">", ">=",
                                 "range", "~=", "!~="]))
    if kind in ("exists", "!exists"):
        text = name if kind == "exists" else "!" + name
        return text, lambda p: (name in p) == (kind == "exists")
    if kind in ("~=", "!~="):
        pattern = draw(st.sampled_from(["^a", "b$", "7", "a|b", "^$", "urn:road:[12]"]))

        def searches(v):
            return any(isinstance(e, str) and re.search(pattern, e) for e in _elements(v))

        if kind == "~=":
            return f'{name}~="{pattern}"', lambda p: any(searches(v) for v in p.get(name, []))
        return f'{name}!~="{pattern}"', lambda p: any(not searches(v) for v in p.get(name, []))
    if kind == "range":
        ordered = [v for v in pool if not isinstance(v, bool)]
        if not ordered:
            ordered = [1, 2]
        low, high = sorted([draw(st.sampled_from(ordered)), draw(st.sampled_from(ordered))])
        negate = draw(st.booleans())

        def within(v):
            return any(_comparable(e, low) and low <= e <= high for e in _elements(v))

        text = f"{name}{'!=' if negate else '=='}{_q_literal(low, draw)}..{_q_literal(high, draw)}"
        if negate:
            return text, lambda p: any(not within(v) for v in p.get(name, []))
        return text, lambda p: any(within(v) for v in p.get(name, []))
    if kind in ORDER:
        value = values[0]
        if isinstance(value, bool) or (isinstance(value, str) and value.startswith("urn:")):
            value = 1
        text = f"{name}{kind}{_q_literal(value, draw)}"
        return text, lambda p: any(_comparable(e, value) and ORDER[kind](e, value)
                                   for v in p.get(name, []) for e in _elements(v))

    def equal(v):
        return any(_same(e, q) for e in _elements(v) for q in values)

    text = f"{name}{kind}{','.join(_q_literal(v, draw) for v in values)}"
    if kind == "==":
        return text, lambda p: any(equal(v) for v in p.get(name, []))
    return text, lambda p: any(not equal(v) for v in p.get(name, []))


@st.composite
def expressions(draw, depth: int = 0):
    """Atoms joined by random ';' and '|'; the truth follows AND-before-OR."""
    count = draw(st.integers(1, 4 if depth < 2 else 2))
    atoms = []
    for _ in range(count):
        if depth < 2 and draw(st.integers(0, 3)) == 0:
            text, truth = draw(expressions(depth + 1))
            atoms.append((f"({text})", truth))
        else:
            atoms.append(draw(terms()))
    ops = [draw(st.sampled_from([";", "|"])) for _ in range(count - 1)]
    text = atoms[0][0] + "".join(op + atom[0] for op, atom in zip(ops, atoms[1:], strict=True))
    groups = [[atoms[0][1]]]
    for op, atom in zip(ops, atoms[1:], strict=True):
        if op == "|":
            groups.append([atom[1]])
        else:
            groups[-1].append(atom[1])

    def truth(plain):
        return any(all(f(plain) for f in group) for group in groups)

    return text, truth


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entities(), expressions())
def test_evaluation_agrees_with_brute_force(drawn_entity, drawn_expression):
    entity, plain = drawn_entity
    text, truth = drawn_expression
    expr = parse_q(text)
    assert q_matches(expr, entity) is truth(plain), text
    # the canonical text parses back to the same tree
    assert parse_q(str(expr)) == expr


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet='ab.[]()!=<>~;|,"\\ 0123456789-:TZtruefalsn', max_size=40))
def test_any_text_parses_or_fails_with_bad_request_data(text):
    try:
        expr = parse_q(text)
    except BadRequestData as error:
        assert error.detail.startswith("q: ")
        return
    assert parse_q(str(expr)) == expr
    q_matches(expr, BUS)  # never raises
