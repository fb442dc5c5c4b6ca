"""The simulated city (模拟城市): a seeded, deterministic Shenzhen-like city as import rows (SPEC 3.5).

Pure Python, no Django: :func:`generate_city` returns plain row dicts with exactly the columns of the
``organizations``, ``places`` and ``instruments`` import files, so the demo and the benchmarks load them
through the same importer (and the same validation) as a regulator's spreadsheet.

What a ``city`` holds (``large`` is three times the markets, stations and meters; ``small`` is for tests):

* the city market-regulation bureau (深圳市市场监督管理局) and one district bureau (监管局) per district;
* farmers' markets (农贸市场) run by market operators (市场开办方), each with one fair scale (公平秤) owned
  by the operator and stalls whose holders are individual businesses (个体工商户, credit codes ``92…``)
  owning price-computing scales (电子计价秤);
* charging stations (充电站) of charging operators (充电运营商) with AC charging points (交流充电桩) and
  DC off-board chargers (直流充电机);
* fuel stations (加油站) of fuel retailers (加油站经营者) whose dispenser nozzles (加油枪) each draw from
  one of the station's tanks (油罐, ``T1``…``T4``);
* residential buildings (住宅楼栋, places of kind ``residence``) in compounds (小区) run by property
  managers (物业服务企业), with cold-water meters (水表) of the water utility (供水企业) and diaphragm gas
  meters (燃气表) of the gas utility (供气企业);
* 20 manufacturers (制造单位) with their models, and 5 verification institutes (检定机构);
* one demo login for every role (:class:`DemoUser`).

Same ``scale``, ``seed`` and ``as_of`` give identical rows.  ``as_of`` is the day the city is "seen"
(install dates lie before it); it defaults to a fixed date so that the rows are a function of the seed
alone, and the demo passes today's date so that verification due dates look current.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import hashlib
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jiliang.engine.uscc import CHARSET, with_check_character

ORGANIZATION_COLUMNS = ("uscc", "name", "kinds", "region_code", "address", "contact_phone")
PLACE_COLUMNS = ("key", "name", "kind", "region_code", "operator_uscc", "address", "lat", "lon")
INSTRUMENT_COLUMNS = (
    "device_id", "instrument_type", "maker_uscc", "model", "serial", "owner_uscc", "place_key", "status",
    "accuracy_class", "params", "install_date", "tank", "sw_id", "sw_hash", "public_key_hex",
)

#: The day a city is seen from unless the caller says otherwise (keeps rows a function of the seed).
DEFAULT_AS_OF = dt.date(2026, 6, 30)

#: Bounding box of the simulated coordinates (Shenzhen).
LAT_RANGE = (22.45, 22.85)
LON_RANGE = (113.75, 114.60)

Row = dict[str, str]


# ------------------------------------------------------------------------------------------------- scales

@dataclass(frozen=True)
class ScaleSpec:
    """How big a simulated city is (城市规模).  Totals are exact; the split over places varies by seed."""

    name: str
    districts: tuple[str, ...]
    markets: int
    scales: int
    charging_stations: int
    chargers: int
    fuel_stations: int
    nozzles: int
    residence_places: int
    water_meters: int
    gas_meters: int
    charging_operators: int
    fuel_retailers: int
    property_managers: int

    @property
    def instruments(self) -> int:
        return self.scales + self.chargers + self.nozzles + self.water_meters + self.gas_meters


SHENZHEN_DISTRICTS = ("440303", "440304", "440305", "440306", "440307", "440308", "440309", "440310", "440311")

SCALES: dict[str, ScaleSpec] = {
    "small": ScaleSpec(
        name="small", districts=("440303", "440304", "440305"), markets=3, scales=90, charging_stations=3,
        chargers=24, fuel_stations=2, nozzles=16, residence_places=12, water_meters=120, gas_meters=72,
        charging_operators=2, fuel_retailers=2, property_managers=2,
    ),
    "city": ScaleSpec(
        name="city", districts=SHENZHEN_DISTRICTS, markets=40, scales=4_000, charging_stations=150,
        chargers=1_500, fuel_stations=60, nozzles=600, residence_places=2_000, water_meters=50_000,
        gas_meters=30_000, charging_operators=8, fuel_retailers=6, property_managers=30,
    ),
}
SCALES["large"] = dataclasses.replace(
    SCALES["city"], name="large", markets=120, scales=12_000, charging_stations=450, chargers=4_500,
    fuel_stations=180, nozzles=1_800, residence_places=6_000, water_meters=150_000, gas_meters=90_000,
    property_managers=60,
)


# ---------------------------------------------------------------------------------------------- geography

@dataclass(frozen=True)
class District:
    """A district (区) of the simulated city: centre, spread, population weight, neighbourhoods, roads."""

    code: str
    name: str
    lat: float
    lon: float
    spread: float
    weight: float  # resident population in 10,000s (2020 census, rounded)
    areas: tuple[str, ...]  # neighbourhoods (街道/片区)
    roads: tuple[str, ...]


DISTRICTS: dict[str, District] = {d.code: d for d in (
    District("440303", "罗湖区", 22.556, 114.131, 0.018, 114,
             ("东门", "翠竹", "黄贝", "莲塘", "笋岗", "清水河", "东晓", "南湖", "桂园", "东湖"),
             ("深南东路", "东门中路", "宝安南路", "人民北路", "太宁路", "莲塘路", "笋岗路", "翠竹路", "爱国路")),
    District("440304", "福田区", 22.541, 114.055, 0.018, 155,
             ("梅林", "香蜜湖", "莲花", "华富", "园岭", "沙头", "福保", "南园", "华强北", "福田"),
             ("深南中路", "红荔路", "福华路", "梅林路", "香蜜湖路", "彩田路", "新洲路", "景田路", "华富路")),
    District("440305", "南山区", 22.533, 113.930, 0.025, 180,
             ("南头", "蛇口", "招商", "粤海", "桃源", "西丽", "沙河", "南山", "前海"),
             ("南海大道", "南山大道", "桃园路", "学府路", "沙河西路", "创业路", "工业八路", "留仙大道")),
    District("440306", "宝安区", 22.655, 113.855, 0.040, 448,
             ("西乡", "新安", "福永", "沙井", "松岗", "石岩", "航城", "福海", "新桥", "燕罗"),
             ("宝安大道", "新安六路", "西乡大道", "创业一路", "福永大道", "沙井路", "松岗大道", "航城大道")),
    District("440307", "龙岗区", 22.690, 114.220, 0.040, 398,
             ("布吉", "坂田", "横岗", "龙城", "平湖", "南湾", "坪地", "龙岗", "吉华", "园山", "宝龙"),
             ("龙岗大道", "布吉路", "坂雪岗大道", "深惠路", "龙翔大道", "平湖大街", "吉华路", "爱联路")),
    District("440308", "盐田区", 22.580, 114.240, 0.014, 21,
             ("沙头角", "海山", "盐田", "梅沙"),
             ("沙盐路", "海山路", "深盐路", "东海道", "明珠大道")),
    District("440309", "龙华区", 22.665, 114.035, 0.030, 253,
             ("观澜", "民治", "大浪", "龙华", "福城", "观湖"),
             ("民治大道", "人民路", "梅龙大道", "观澜大道", "大浪南路", "龙华大道", "东环一路", "布龙路")),
    District("440310", "坪山区", 22.705, 114.345, 0.025, 55,
             ("坪山", "坑梓", "碧岭", "石井", "马峦", "龙田"),
             ("坪山大道", "深汕路", "东纵路", "龙兴南路", "金牛路", "人民西路")),
    District("440311", "光明区", 22.750, 113.925, 0.025, 110,
             ("公明", "光明", "凤凰", "玉塘", "新湖", "马田"),
             ("光明大道", "松白路", "华夏路", "观光路", "光侨路", "长春路")),
)}

#: Places outside Shenzhen that manufacturers sit in (GB/T 2260 codes present in the region list).
OTHER_REGIONS = {"445202": "揭阳市榕城区", "445203": "揭阳市揭东区", "445222": "揭阳市揭西县",
                 "445224": "揭阳市惠来县", "445281": "揭阳市普宁市"}

SURNAMES = "陈李张黄刘林王吴杨郑何周谢罗梁徐许邓冯曾蔡彭赖朱郭苏叶钟卢潘"
GIVEN = ("伟", "强", "芳", "娟", "军", "明", "华", "平", "辉", "丽", "霞", "健", "勇", "燕", "斌", "记")
GOODS = ("蔬菜", "鲜肉", "猪肉", "牛肉", "水产", "海鲜", "禽蛋", "水果", "粮油", "干货", "豆制品", "熟食",
         "冻品", "调味品")
STALL_SUFFIX = ("档", "店", "摊", "行")
MARKET_SUFFIX = ("农贸市场", "农贸市场", "综合市场", "肉菜市场")
COMPOUND_PREFIX = ("碧海", "翠林", "金色", "阳光", "锦绣", "海韵", "鹏程", "东方", "星河", "椰风", "荔景", "桃源",
                   "和谐", "幸福", "丽水", "景华", "绿景", "金众", "宏发", "泰华", "万福", "富通", "骏景", "天骄",
                   "蔚蓝", "御景", "书香", "春华", "嘉园", "怡景")
COMPOUND_SUFFIX = ("花园", "名苑", "新村", "家园", "雅居", "华庭", "豪庭", "山庄", "公馆", "新城", "苑", "大厦")
PROPERTY_WORDS = ("安居", "康居", "嘉宏", "德润", "信和", "恒信", "合兴", "汇景", "景华", "泰然", "宏发", "安信",
                  "兴华", "祥和", "盛世", "旭日", "东润", "华泰", "新鸿", "泓景", "瑞丰", "丰泽", "融信", "裕丰",
                  "嘉鸿", "伟业", "立信", "天安", "佳和", "鹏基")
CHARGING_OPERATORS = (("深圳市鹏城新能源充电科技有限公司", "鹏城充电"), ("深圳市绿电快充科技有限公司", "绿电快充"),
                      ("深圳市星桩能源科技有限公司", "星桩能源"), ("深圳市深巴充电服务有限公司", "深巴充电"),
                      ("深圳市湾区电动出行科技有限公司", "湾区出行"), ("深圳市蓝海充电网络有限公司", "蓝海充电"),
                      ("深圳市易充智联科技有限公司", "易充智联"), ("深圳市聚能桩联科技有限公司", "聚能桩联"))
CHARGING_POI = ("停车场", "公交场站", "商业中心", "产业园", "体育中心", "地铁站", "物流园", "超级充电站")
FUEL_RETAILERS = (("深圳市鹏海石油销售有限公司", "鹏海石油"), ("深圳市南粤能源有限公司", "南粤能源"),
                  ("深圳市前海油品销售有限公司", "前海油品"), ("深圳市湾区石化销售有限公司", "湾区石化"),
                  ("深圳市通达石油有限公司", "通达石油"), ("深圳市粤港加油站管理有限公司", "粤港石油"))
MARKET_GROUPS = ("深圳市菜篮子市场管理集团有限公司", "深圳市鲜生活市场运营有限公司", "深圳市惠民农贸市场管理有限公司")


# --------------------------------------------------------------------------------- makers and their models

@dataclass(frozen=True)
class Model:
    """An instrument model (型号) as the import file names it, with its fixed parameters."""

    instrument_type: str
    name: str
    accuracy_class: str
    params: str  # JSON object text, '' when the type has none
    firmware: tuple[str, ...] = ()  # software versions (软件版本) in the field, oldest first


@dataclass(frozen=True)
class Maker:
    """A manufacturer (制造单位) of one family of instruments."""

    name: str
    region: str
    code: str  # two letters used in its model names and serial numbers
    family: str  # scale | water_meter | gas_meter | ev_charger | fuel_dispenser
    uscc: str = ""

    def models(self) -> tuple[Model, ...]:
        c = self.code
        if self.family == "scale":
            return (Model("scale", f"{c}CS-15", "III", _params(e_g=5, max_g=15000), ("V2.0.7", "V2.1.3")),
                    Model("scale", f"{c}CS-6", "III", _params(e_g=2, max_g=6000), ("V2.0.7", "V2.1.3")))
        if self.family == "water_meter":
            return (Model("water_meter", f"{c}-LXS-15E", "2", _params(Q3_m3h=2.5, R=100, DN_mm=15)),
                    Model("water_meter", f"{c}-LXS-20E", "2", _params(Q3_m3h=4, R=100, DN_mm=20)))
        if self.family == "gas_meter":
            return (Model("gas_meter", f"{c}-JBD-G4", "1.5", _params(qmax_m3h=6)),
                    Model("gas_meter", f"{c}-JBD-G2.5", "1.5", _params(qmax_m3h=4)))
        if self.family == "ev_charger":
            return (Model("ev_charger_ac", f"{c}-AC7", "2", _params(rated_power_kw=7), ("V1.4.2", "V1.5.0")),
                    Model("ev_charger_dc", f"{c}-DC60", "1", _params(rated_power_kw=60), ("V3.2.1", "V3.3.0")),
                    Model("ev_charger_dc", f"{c}-DC120", "1", _params(rated_power_kw=120), ("V3.2.1", "V3.3.0")))
        return (Model("fuel_dispenser", f"{c}-JS2246", "0.3", ""),)


MAKERS: tuple[Maker, ...] = (
    Maker("深圳市鹏衡电子衡器有限公司", "440306", "PH", "scale"),
    Maker("深圳市精诚衡器科技有限公司", "440307", "JC", "scale"),
    Maker("揭阳市恒准衡器有限公司", "445202", "HZ", "scale"),
    Maker("普宁市金秤电子科技有限公司", "445281", "JS", "scale"),
    Maker("深圳市联华衡器有限公司", "440309", "LH", "scale"),
    Maker("深圳市鹏泉水表有限公司", "440309", "PQ", "water_meter"),
    Maker("深圳市华水智能仪表有限公司", "440305", "HS", "water_meter"),
    Maker("揭阳市清源水表有限公司", "445203", "QY", "water_meter"),
    Maker("深圳市汇流计量科技有限公司", "440307", "HL", "water_meter"),
    Maker("深圳市安燃仪表有限公司", "440306", "AR", "gas_meter"),
    Maker("深圳市鹏气智能燃气表有限公司", "440311", "PG", "gas_meter"),
    Maker("揭西县宏达燃气表有限公司", "445222", "HD", "gas_meter"),
    Maker("深圳市中燃计量仪表有限公司", "440310", "ZR", "gas_meter"),
    Maker("深圳市鹏电充电设备有限公司", "440305", "PD", "ev_charger"),
    Maker("深圳市优充科技有限公司", "440309", "YC", "ev_charger"),
    Maker("深圳市能达电气有限公司", "440307", "ND", "ev_charger"),
    Maker("深圳市快能新能源设备有限公司", "440311", "KN", "ev_charger"),
    Maker("深圳市油准加油设备有限公司", "440306", "YZ", "fuel_dispenser"),
    Maker("惠来县海通加油设备有限公司", "445224", "HT", "fuel_dispenser"),
    Maker("深圳市恒流加油设备有限公司", "440310", "HF", "fuel_dispenser"),
)

INSTITUTES = (("深圳市计量检定测试研究院", "440300"), ("深圳市水表燃气表检定中心", "440305"),
              ("深圳市宝安区计量检定所", "440306"), ("深圳市龙岗区计量检定所", "440307"),
              ("深圳市新能源汽车充电设施计量检测中心", "440309"))

DEVICE_PREFIX = {"scale": "SC", "water_meter": "WM", "gas_meter": "GM", "ev_charger_ac": "AC",
                 "ev_charger_dc": "DC", "fuel_dispenser": "FD"}


def _cn_number(n: int) -> str:
    """Chinese numeral for 1..99 (二, 十一, 二十三), used to tell apart places of the same name."""
    digits = "零一二三四五六七八九"
    if n < 10:
        return digits[n]
    tens, ones = divmod(n, 10)
    return f"{digits[tens] if tens > 1 else ''}十{digits[ones] if ones else ''}"


def _params(**values: float) -> str:
    return json.dumps(values, separators=(",", ":"))


# ------------------------------------------------------------------------------------------------- output

#: The documented password of every demo login (演示账户密码).  Demo data only.
DEMO_PASSWORD = "jiliang-demo-2026"  # noqa: S105 (a published demo password, not a secret)


@dataclass(frozen=True)
class DemoUser:
    """A demo login (演示账户): who it is, which organisation and region it belongs to, what it sees."""

    username: str
    role: str
    title: str  # bilingual job title
    sees: str  # bilingual description of its scope
    organization_uscc: str | None = None
    region_code: str | None = None
    is_superuser: bool = False


@dataclass
class City:
    """A generated city: import rows in SPEC 3.5 column order plus the demo logins."""

    scale: str
    seed: int
    as_of: dt.date
    organizations: list[Row] = field(default_factory=list)
    places: list[Row] = field(default_factory=list)
    instruments: list[Row] = field(default_factory=list)
    users: list[DemoUser] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Row counts by organisation kind, place kind and instrument type (for tests and summaries)."""
        out: dict[str, int] = {"organizations": len(self.organizations), "places": len(self.places),
                               "instruments": len(self.instruments)}
        for o in self.organizations:
            for k in o["kinds"].split(";"):
                out[f"org:{k}"] = out.get(f"org:{k}", 0) + 1
        for p in self.places:
            out[f"place:{p['kind']}"] = out.get(f"place:{p['kind']}", 0) + 1
        for i in self.instruments:
            out[f"type:{i['instrument_type']}"] = out.get(f"type:{i['instrument_type']}", 0) + 1
        return out


def write_csv_files(city: City, directory: Path) -> dict[str, Path]:
    """Write the city as the three import files (导入文件) ``organizations.csv``, ``places.csv`` and
    ``instruments.csv`` (UTF-8, header row), ready for ``jiliang import KIND FILE`` in that order."""
    directory.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    for kind, columns, rows in (("organizations", ORGANIZATION_COLUMNS, city.organizations),
                                ("places", PLACE_COLUMNS, city.places),
                                ("instruments", INSTRUMENT_COLUMNS, city.instruments)):
        path = directory / f"{kind}.csv"
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
        out[kind] = path
    return out


# ---------------------------------------------------------------------------------------------- generator

def apportion(total: int, weights: Sequence[float], minimum: int = 0) -> list[int]:
    """Split ``total`` into integers proportional to ``weights`` (largest remainder), each ≥ ``minimum``.

    >>> apportion(10, [1, 1, 2])
    [3, 2, 5]
    >>> apportion(5, [100, 1, 1], minimum=1)
    [3, 1, 1]
    """
    n = len(weights)
    if n == 0:
        return []
    if minimum * n > total:
        raise ValueError(f"cannot give {n} parts at least {minimum} each out of {total}")
    rest = total - minimum * n
    wsum = float(sum(weights))
    quotas = [rest * w / wsum for w in weights]
    parts = [int(q) for q in quotas]
    order = sorted(range(n), key=lambda i: (parts[i] - quotas[i], i))
    for i in order[: rest - sum(parts)]:
        parts[i] += 1
    return [p + minimum for p in parts]


class _Builder:
    """Draws the city from one ``random.Random`` in a fixed order, so a seed fixes every row."""

    def __init__(self, spec: ScaleSpec, seed: int, as_of: dt.date) -> None:
        self.spec = spec
        self.rng = random.Random(seed)
        self.as_of = as_of
        self.city = City(scale=spec.name, seed=seed, as_of=as_of)
        self._org_codes: set[int] = set()
        self._device_seq: dict[tuple[str, str], int] = {}
        self._serial_seq: dict[str, int] = {}
        self._used_names: set[str] = set()
        self.districts = [DISTRICTS[c] for c in spec.districts]
        self.makers: dict[str, list[Maker]] = {}

    # ------------------------------------------------------------------------------------------ helpers

    def uscc(self, prefix: str, region: str) -> str:
        """A valid, unique credit code: ``prefix`` (91 company, 92 individual business, 11 government body,
        12 public institution), the region in characters 3-8, a unique organisation code, the check."""
        v = self.rng.randrange(31**7)
        while v in self._org_codes:
            v = self.rng.randrange(31**7)
        self._org_codes.add(v)
        body = "".join(CHARSET[(v // 31**i) % 31] for i in range(6, -1, -1))
        letters = "MA" if prefix[0] == "9" else "MB"
        return with_check_character(prefix + region + letters + body)

    def org(self, *, prefix: str, name: str, kinds: str, region: str, address: str, phone: str) -> str:
        code = self.uscc(prefix, region)
        self.city.organizations.append({"uscc": code, "name": name, "kinds": kinds, "region_code": region,
                                        "address": address, "contact_phone": phone})
        return code

    def landline(self, region: str) -> str:
        if region.startswith("4452"):
            return f"0663-{self.rng.randrange(8200000, 8999999)}"
        return f"0755-{self.rng.randrange(22000000, 89999999)}"

    def mobile(self) -> str:
        return f"1{self.rng.choice('3578')}{self.rng.randrange(10**9):09d}"

    def street_address(self, d: District, area: str | None = None) -> str:
        area = area or self.rng.choice(d.areas)
        return f"深圳市{d.name}{area}街道{self.rng.choice(d.roads)}{self.rng.randrange(1, 400)}号"

    def point(self, d: District, spread: float | None = None, centre: tuple[float, float] | None = None
              ) -> tuple[float, float]:
        s = d.spread if spread is None else spread
        lat0, lon0 = centre or (d.lat, d.lon)
        lat = min(max(self.rng.gauss(lat0, s), LAT_RANGE[0] + 0.001), LAT_RANGE[1] - 0.001)
        lon = min(max(self.rng.gauss(lon0, s * 1.3), LON_RANGE[0] + 0.001), LON_RANGE[1] - 0.001)
        return round(lat, 6), round(lon, 6)

    def unique_name(self, make: Any) -> str:
        """Call ``make()`` until it returns a name not used yet (then number it: 某某农贸市场（二）)."""
        for _ in range(20):
            name = str(make())
            if name not in self._used_names:
                self._used_names.add(name)
                return name
        base = str(make())
        n = 2
        while f"{base}（{_cn_number(n)}）" in self._used_names:
            n += 1
        name = f"{base}（{_cn_number(n)}）"
        self._used_names.add(name)
        return name

    def device_id(self, itype: str, district: str) -> str:
        prefix = DEVICE_PREFIX[itype]
        n = self._device_seq.get((prefix, district), 0) + 1
        self._device_seq[(prefix, district)] = n
        return f"{prefix}-{district}-{n:06d}"

    def serial(self, maker: Maker, year: int) -> str:
        n = self._serial_seq.get(maker.code, 0) + 1
        self._serial_seq[maker.code] = n
        return f"{maker.code}{year % 100:02d}{n:07d}"

    def days_ago(self, lo: int, hi: int) -> dt.date:
        return self.as_of - dt.timedelta(days=self.rng.randrange(lo, hi))

    def firmware(self, maker: Maker, model: Model) -> tuple[str, str]:
        """Filed software identifier and checksum (软件标识与校验和): most units run the newest version."""
        if not model.firmware:
            return "", ""
        version = model.firmware[-1] if self.rng.random() < 0.8 else self.rng.choice(model.firmware[:-1])
        digest = hashlib.sha256(f"{maker.code}|{model.name}|{version}".encode()).hexdigest()
        return f"{model.name} {version}", digest

    def instrument(self, *, maker: Maker, model: Model, owner: str, place: str, district: str, status: str,
                   install: dt.date, serial: str | None = None, tank: str = "", firmware: bool = False) -> None:
        sw_id, sw_hash = self.firmware(maker, model) if firmware else ("", "")
        self.city.instruments.append({
            "device_id": self.device_id(model.instrument_type, district),
            "instrument_type": model.instrument_type,
            "maker_uscc": maker.uscc,
            "model": model.name,
            "serial": serial or self.serial(maker, install.year - (1 if install.month < 3 else 0)),
            "owner_uscc": owner,
            "place_key": place,
            "status": status,
            "accuracy_class": model.accuracy_class,
            "params": model.params,
            "install_date": install.isoformat(),
            "tank": tank,
            "sw_id": sw_id,
            "sw_hash": sw_hash,
            "public_key_hex": "",
        })

    def place(self, *, key: str, name: str, kind: str, d: District, operator: str, address: str,
              at: tuple[float, float]) -> str:
        self.city.places.append({"key": key, "name": name, "kind": kind, "region_code": d.code,
                                 "operator_uscc": operator, "address": address,
                                 "lat": f"{at[0]:.6f}", "lon": f"{at[1]:.6f}"})
        return key

    def split_by_district(self, total: int) -> list[int]:
        minimum = 1 if total >= len(self.districts) else 0
        return apportion(total, [d.weight for d in self.districts], minimum)

    def status(self, suspended: float, installed: float) -> str:
        r = self.rng.random()
        if r < suspended:
            return "suspended"
        if r < suspended + installed:
            return "installed"
        return "in_service"

    # --------------------------------------------------------------------------------------------- parts

    def authorities(self) -> dict[str, str]:
        """The city bureau and the district bureaus (市场监督管理局及各区监管局); returns region → uscc."""
        out = {"440300": self.org(prefix="11", name="深圳市市场监督管理局", kinds="regulator", region="440300",
                                  address="深圳市福田区深南大道7010号", phone="0755-12345")}
        for d in self.districts:
            out[d.code] = self.org(prefix="11", name=f"深圳市市场监督管理局{d.name[:-1]}监管局", kinds="regulator",
                                   region=d.code, address=self.street_address(d), phone=self.landline(d.code))
        return out

    def institutes(self) -> list[str]:
        out = []
        for name, region in INSTITUTES:
            d = DISTRICTS.get(region, DISTRICTS["440304"])
            out.append(self.org(prefix="12", name=name, kinds="verification_institute", region=region,
                                address=self.street_address(d), phone=self.landline(region)))
        return out

    def manufacturers(self) -> None:
        for m in MAKERS:
            if m.region in DISTRICTS:
                address = self.street_address(DISTRICTS[m.region])
            else:
                address = f"{OTHER_REGIONS[m.region]}工业园区{self.rng.randrange(1, 60)}号"
            code = self.org(prefix="91", name=m.name, kinds="manufacturer", region=m.region, address=address,
                            phone=self.landline(m.region))
            self.makers.setdefault(m.family, []).append(dataclasses.replace(m, uscc=code))

    def markets(self) -> str:
        """Farmers' markets (农贸市场) with stalls and scales.  Returns the credit code of the operator of the
        first market in 福田区 (the demo market-operator login), or of the first market at all."""
        spec, rng = self.spec, self.rng
        groups: list[str] = []
        if spec.markets >= 10:
            for name in MARKET_GROUPS:
                d = self.districts[len(groups) % len(self.districts)]
                groups.append(self.org(prefix="91", name=name, kinds="market_operator", region=d.code,
                                       address=self.street_address(d), phone=self.landline(d.code)))
        per_market = apportion(spec.scales, [rng.uniform(0.6, 1.4) for _ in range(spec.markets)], minimum=5)
        first_operator = futian_operator = ""
        index = 0
        scale_makers = self.makers["scale"]
        for d, count in zip(self.districts, self.split_by_district(spec.markets), strict=True):
            areas = list(d.areas)
            for j in range(count):
                if j < len(areas):
                    area = areas[j] if j == 0 else rng.choice(areas[1:] or areas)
                    if j > 0:
                        areas.remove(area)
                else:
                    area = rng.choice(d.areas)
                suffix = MARKET_SUFFIX[0] if j == 0 else rng.choice(MARKET_SUFFIX)
                name = self.unique_name(lambda d=d, a=area, s=suffix: f"{d.name}{a}{s}")
                short = name.removeprefix(d.name)
                address = self.street_address(d, area)
                if groups and rng.random() < 0.4:
                    operator = rng.choice(groups)
                else:
                    operator = self.org(prefix="91", name=f"深圳市{short}管理有限公司", kinds="market_operator",
                                        region=d.code, address=address, phone=self.landline(d.code))
                first_operator = first_operator or operator
                if d.code == "440304" and not futian_operator:
                    futian_operator = operator
                key = self.place(key=f"MK-{d.code}-{j + 1:02d}", name=name, kind="market", d=d, operator=operator,
                                 address=address, at=self.point(d))
                self._market_scales(d, key, short, operator, per_market[index], scale_makers)
                index += 1
        return futian_operator or first_operator

    def _market_scales(self, d: District, key: str, short: str, operator: str, count: int,
                       makers: list[Maker]) -> None:
        rng = self.rng
        main = rng.choice(makers)
        opened = self.days_ago(400, 8 * 365)
        # The fair scale (公平秤) at the market office belongs to the operator.
        self.instrument(maker=main, model=main.models()[0], owner=operator, place=key, district=d.code,
                        status="in_service", install=self.days_ago(30, 3 * 365), firmware=True)
        left = count - 1
        stall = 0
        while left > 0:
            stall += 1
            n = min(left, rng.choice((1, 1, 1, 1, 1, 1, 2, 2, 2, 3)))
            left -= n
            zone = "ABCD"[(stall - 1) % 4]
            holder = (f"深圳市{d.name}{rng.choice(SURNAMES)}{rng.choice(GIVEN)}"
                      f"{rng.choice(GOODS)}{rng.choice(STALL_SUFFIX)}")
            owner = self.org(prefix="92", name=holder, kinds="market_entity", region=d.code,
                             address=f"深圳市{d.name}{short}{zone}{stall:03d}号档", phone=self.mobile())
            maker = main if rng.random() < 0.6 else rng.choice(makers)
            for _ in range(n):
                model = maker.models()[0 if rng.random() < 0.7 else 1]
                status = self.status(suspended=0.03, installed=0.01)
                # rng.random() (not randrange over an as_of-dependent span) keeps the draws, and so the city,
                # the same whatever day it is seen from.
                span = (self.as_of - opened).days - 30
                install = self.days_ago(1, 30) if status == "installed" else opened + dt.timedelta(
                    days=int(rng.random() * span))
                self.instrument(maker=maker, model=model, owner=owner, place=key, district=d.code, status=status,
                                install=install, firmware=True)

    def charging(self) -> None:
        """Charging stations (充电站) with AC charging points and DC chargers, owned by their operator."""
        spec, rng = self.spec, self.rng
        ops = []
        for name, short in CHARGING_OPERATORS[: spec.charging_operators]:
            d = rng.choice(self.districts)
            ops.append((self.org(prefix="91", name=name, kinds="charging_operator", region=d.code,
                                 address=self.street_address(d), phone=self.landline(d.code)), short))
        per_station = apportion(spec.chargers, [rng.uniform(0.4, 1.6) for _ in range(spec.charging_stations)],
                                minimum=2)
        index = 0
        makers = self.makers["ev_charger"]
        for d, count in zip(self.districts, self.split_by_district(spec.charging_stations), strict=True):
            for j in range(count):
                operator, short = rng.choice(ops)
                area = rng.choice(d.areas)
                name = self.unique_name(lambda s=short, a=area: f"{s}{a}{rng.choice(CHARGING_POI)}充电站")
                key = self.place(key=f"CS-{d.code}-{j + 1:03d}", name=name, kind="charging_station", d=d,
                                 operator=operator, address=self.street_address(d, area), at=self.point(d))
                maker = rng.choice(makers)
                ac, dc60, dc120 = maker.models()
                dc_share = rng.choice((0.0, 0.3, 0.5, 0.8, 1.0))
                opened = self.days_ago(90, 5 * 365)
                for _ in range(per_station[index]):
                    is_dc = rng.random() < dc_share
                    model = (dc120 if rng.random() < 0.4 else dc60) if is_dc else ac
                    status = self.status(suspended=0.04, installed=0.0)
                    self.instrument(maker=maker, model=model, owner=operator, place=key, district=d.code,
                                    status=status, install=opened + dt.timedelta(days=rng.randrange(0, 60)),
                                    firmware=True)
                index += 1

    def fuel(self) -> None:
        """Fuel stations (加油站): dispensers with 2 or 4 nozzles, each nozzle drawing from one tank."""
        spec, rng = self.spec, self.rng
        retailers = []
        for name, short in FUEL_RETAILERS[: spec.fuel_retailers]:
            d = rng.choice(self.districts)
            retailers.append((self.org(prefix="91", name=name, kinds="fuel_retailer", region=d.code,
                                       address=self.street_address(d), phone=self.landline(d.code)), short))
        per_station = apportion(spec.nozzles, [rng.uniform(0.6, 1.4) for _ in range(spec.fuel_stations)],
                                minimum=4)
        index = 0
        makers = self.makers["fuel_dispenser"]
        for d, count in zip(self.districts, self.split_by_district(spec.fuel_stations), strict=True):
            for j in range(count):
                operator, short = rng.choice(retailers)
                area = rng.choice(d.areas)
                name = self.unique_name(lambda s=short, a=area: f"{s}{a}加油站")
                key = self.place(key=f"FS-{d.code}-{j + 1:02d}", name=name, kind="fuel_station", d=d,
                                 operator=operator, address=self.street_address(d, area), at=self.point(d))
                tanks = [f"T{t}" for t in range(1, rng.choice((3, 4, 4)) + 1)]
                maker = rng.choice(makers)
                (model,) = maker.models()
                opened = self.days_ago(200, 10 * 365)
                left = per_station[index]
                while left > 0:
                    n = min(left, rng.choice((2, 4, 4)))
                    left -= n
                    install = opened + dt.timedelta(days=rng.randrange(0, 120))
                    base = self.serial(maker, install.year)
                    first_tank = rng.randrange(len(tanks))
                    for k in range(n):
                        self.instrument(maker=maker, model=model, owner=operator, place=key, district=d.code,
                                        status=self.status(suspended=0.02, installed=0.0), install=install,
                                        serial=f"{base}-{k + 1}", tank=tanks[(first_tank + k) % len(tanks)])
                index += 1

    def residences(self) -> str:
        """Residential buildings (住宅楼栋) in compounds (小区), with water and gas meters in batches.

        Returns the water utility's credit code."""
        spec, rng = self.spec, self.rng
        home = DISTRICTS["440304"]
        water = self.org(prefix="91", name="深圳市鹏城水务集团有限公司", kinds="utility", region=home.code,
                         address=self.street_address(home), phone="0755-96868")
        gas = self.org(prefix="91", name="深圳市鹏城燃气集团股份有限公司", kinds="utility", region=home.code,
                       address=self.street_address(home), phone="0755-83601139")
        managers = []
        for _ in range(spec.property_managers):
            d = rng.choice(self.districts)
            name = self.unique_name(lambda: f"深圳市{rng.choice(PROPERTY_WORDS)}物业服务有限公司")
            managers.append(self.org(prefix="91", name=name, kinds="market_entity", region=d.code,
                                     address=self.street_address(d), phone=self.landline(d.code)))
        buildings: list[tuple[District, str]] = []
        for d, quota in zip(self.districts, self.split_by_district(spec.residence_places), strict=True):
            n = 0
            while n < quota:
                size = min(quota - n, rng.randrange(2, 13))
                area = rng.choice(d.areas)
                compound = self.unique_name(
                    lambda a=area: f"{a}{rng.choice(COMPOUND_PREFIX)}{rng.choice(COMPOUND_SUFFIX)}")
                manager = rng.choice(managers)
                address = self.street_address(d, area)
                centre = self.point(d)
                for b in range(1, size + 1):
                    n += 1
                    key = self.place(key=f"RS-{d.code}-{n:05d}", name=f"{compound}{b}栋", kind="residence", d=d,
                                     operator=manager, address=f"{address}{compound}{b}栋",
                                     at=self.point(d, spread=0.0006, centre=centre))
                    buildings.append((d, key))
        households = apportion(spec.water_meters, [rng.uniform(0.5, 1.5) for _ in buildings], minimum=1)
        with_gas = apportion(spec.gas_meters, [h * rng.uniform(0.2, 1.0) for h in households])
        water_makers, gas_makers = self.makers["water_meter"], self.makers["gas_meter"]
        for (d, key), n_water, n_gas in zip(buildings, households, with_gas, strict=True):
            # One delivery batch per building and utility (同一批次): same maker, model and install period.
            wm = rng.choice(water_makers)
            w_model = wm.models()[0 if rng.random() < 0.92 else 1]
            w_lot = self.days_ago(45, 7 * 365)
            for _ in range(n_water):
                self.instrument(maker=wm, model=w_model, owner=water, place=key, district=d.code,
                                status=self.status(suspended=0.01, installed=0.0),
                                install=w_lot + dt.timedelta(days=rng.randrange(0, 14)))
            gm = rng.choice(gas_makers)
            g_model = gm.models()[0 if rng.random() < 0.7 else 1]
            g_lot = self.days_ago(45, 11 * 365)
            for _ in range(n_gas):
                self.instrument(maker=gm, model=g_model, owner=gas, place=key, district=d.code,
                                status=self.status(suspended=0.01, installed=0.0),
                                install=g_lot + dt.timedelta(days=rng.randrange(0, 14)))
        return water

    def users(self, authorities: dict[str, str], institutes: list[str], market_operator: str, water: str) -> None:
        futian = "440304" if "440304" in authorities else self.districts[0].code
        dname = DISTRICTS[futian].name
        scale_maker = self.makers["scale"][0]
        self.city.users = [
            DemoUser("admin", "admin", "系统管理员 / administrator",
                     "全部数据与系统管理 / everything, and the admin site", is_superuser=True),
            DemoUser("city_regulator", "regulator", "市局监管人员 / city regulator",
                     "全市各区的登记、器具与单位 / every district of the city", authorities["440300"], "440300"),
            DemoUser("futian_regulator", "regulator", f"{dname}监管局监管人员 / district regulator",
                     f"仅{dname}的数据 / its district only", authorities[futian], futian),
            DemoUser("futian_inspector", "inspector", f"{dname}执法人员 / inspector",
                     f"{dname}（只读）及分派的检查任务 / its district, read-only", authorities[futian], futian),
            DemoUser("institute", "institute", "检定机构检定员 / verification institute",
                     "服务区域（全市）的器具（只读） / instruments in its service region (the city), read-only",
                     institutes[0], "440300"),
            DemoUser("manufacturer", "manufacturer", f"{scale_maker.name} / manufacturer",
                     "本单位制造的器具与型号 / the instruments and models it made", scale_maker.uscc),
            DemoUser("water_utility", "utility", "供水企业 / water utility",
                     "本单位的水表 / the water meters it owns", water),
            DemoUser("market_operator", "market_entity", "农贸市场开办方 / market operator",
                     "所开办市场的计价秤及本单位器具 / the scales at the markets it runs", market_operator),
        ]


def generate_city(scale: str | ScaleSpec = "small", seed: int = 20261123, as_of: dt.date | None = None) -> City:
    """Generate the simulated city (生成模拟城市) for a scale name (``small``, ``city``, ``large``) or spec."""
    spec = SCALES[scale] if isinstance(scale, str) else scale
    unknown = [c for c in spec.districts if c not in DISTRICTS]
    if unknown:
        raise ValueError(f"unknown district codes {unknown}")
    b = _Builder(spec, seed, as_of or DEFAULT_AS_OF)
    authorities = b.authorities()
    institutes = b.institutes()
    b.manufacturers()
    market_operator = b.markets()
    b.charging()
    b.fuel()
    water = b.residences()
    b.users(authorities, institutes, market_operator, water)
    return b.city
