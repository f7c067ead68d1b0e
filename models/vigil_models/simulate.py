"""A deterministic, seeded simulator of authentication events with labelled attacks.

    from vigil_models.simulate import simulate, stream
    events = simulate(n_users=200, days=28, seed=7)      # list of dicts, sorted by @timestamp
    for e in stream(10_000, 1, seed=7, rate=500): ...    # generator, day by day, time-ordered

    cd models && ../.venv/bin/python -m vigil_models.simulate --users 50 --days 7 > events.ndjson
    ../.venv/bin/python -m vigil_models.simulate --users 10000 --days 1 --rate 500 > 5M.ndjson
    ../.venv/bin/python -m vigil_models.simulate --users 50 --days 1 --raw     # vendor shapes

Population. Users have a home country and city (lat/lon), a residential ISP (ASN), a laptop
browser and often a phone, working hours in their time zone, weekends mostly off, an identity
provider (Okta or Entra ID), an MFA habit (push on most sign-ins, sometimes a denied push by
mistake), and some mistype their password once or twice. Half work from an office whose
egress is **shared** (one IP / ASN for every user of the site), some go through the corporate
VPN egress in a cloud ASN (shared too: the benign near-miss for password spray and for "new
ASN"), some use a commercial VPN. Some travel on business: the first sign-in abroad comes after a
plausible flight time. Service accounts log in over sshd from cloud ASNs with scripting clients.
Over the day users' sessions are refreshed (`session_refresh`); `rate` sets how many events a
working user produces per day (about 8 by default, 500 to reach ~5 M events for 10,000 users).

Attacks (`vigil.sim.label: malicious`, `vigil.sim.attack`, `vigil.sim.campaign`):
- `password_spray`: one hosting IP, one or two passwords against many users, slowly;
- `credential_stuffing`: many residential-proxy IPs, many (partly non-existent) users;
- `brute_force`: one IP hammers one user (IdP, sshd or Windows RDP), then often succeeds;
- `mfa_fatigue`: a valid password from a new network, then push denials, then an approval;
- `impossible_travel`: the user signs in at home, and within the hour from another continent;
- `token_replay`: the user's session is refreshed from a distant IP in a hosting ASN;
- `new_country_takeover`: stolen credentials used from a country, ISP and device the user never used.

Output: normalised ECS by default (the fields the features read: `@timestamp`, `user.name`,
`event.category: ["authentication"]`, `event.outcome`, `event.action`, `source.ip`,
`source.geo.{country_iso_code,location}`, `source.as.number`, `user_agent.original`, plus
`event.module`/`event.dataset` naming the source). `--raw` emits vendor shapes instead: Okta
System Log, Entra ID sign-in logs (Azure diagnostic), Windows Security 4624/4625 (winlogbeat
`winlog`), sshd syslog lines. Raw Windows and sshd events carry no geo/ASN (GeoIP is the
pipeline's job). Labels stay under `vigil.sim` in both forms: they are never features.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import zlib
from bisect import bisect_left
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import numpy as np

# code, lat, lon, utc offset (hours), weight as a home country, residential ISPs [(asn, org)]
COUNTRIES = {
    "US": (39.8, -98.6, -5, 0.30, [(7922, "Comcast Cable Communications, LLC"), (7018, "AT&T Services, Inc."), (701, "Verizon Business")]),
    "DE": (51.2, 10.4, 1, 0.12, [(3320, "Deutsche Telekom AG"), (3209, "Vodafone GmbH")]),
    "FR": (46.6, 2.2, 1, 0.10, [(3215, "Orange S.A."), (12322, "Free SAS")]),
    "GB": (54.0, -2.0, 0, 0.10, [(2856, "British Telecommunications PLC"), (5089, "Virgin Media Limited")]),
    "IN": (21.0, 78.0, 5, 0.08, [(9829, "National Internet Backbone"), (55836, "Reliance Jio Infocomm Limited")]),
    "BR": (-14.2, -51.9, -3, 0.06, [(18881, "TELEFONICA BRASIL S.A"), (28573, "Claro NXT Telecomunicacoes Ltda")]),
    "JP": (36.2, 138.3, 9, 0.06, [(2516, "KDDI CORPORATION"), (4713, "NTT Communications Corporation")]),
    "CA": (56.1, -106.3, -5, 0.06, [(812, "Rogers Communications Canada Inc."), (577, "Bell Canada")]),
    "NL": (52.1, 5.3, 1, 0.06, [(1136, "KPN B.V."), (33915, "Vodafone Libertel B.V.")]),
    "ES": (40.5, -3.7, 1, 0.06, [(3352, "TELEFONICA DE ESPANA S.A.U."), (12479, "ORANGE ESPAGNE SA")]),
    # not home countries: travel, VPN exits and attack origins
    "SG": (1.35, 103.8, 8, 0.0, [(9506, "Singtel Fibre Broadband")]),
    "RU": (61.5, 105.3, 3, 0.0, [(12389, "PJSC Rostelecom"), (8359, "MTS PJSC")]),
    "CN": (35.9, 104.2, 8, 0.0, [(4134, "Chinanet"), (4837, "CHINA UNICOM China169 Backbone")]),
    "VN": (14.1, 108.3, 7, 0.0, [(7552, "Viettel Group"), (45899, "VNPT Corp")]),
    "NG": (9.1, 8.7, 1, 0.0, [(29465, "MTN NIGERIA Communication limited")]),
    "RO": (45.9, 24.97, 2, 0.0, [(8708, "RCS & RDS SA")]),
    "ID": (-0.8, 113.9, 7, 0.0, [(7713, "PT Telekomunikasi Indonesia")]),
    "UA": (48.4, 31.2, 2, 0.0, [(15895, "Kyivstar PJSC")]),
    "MX": (23.6, -102.6, -6, 0.0, [(8151, "UNINET")]),
    "IT": (41.9, 12.6, 1, 0.0, [(3269, "Telecom Italia S.p.A.")]),
}
HOME = [c for c, v in COUNTRIES.items() if v[3] > 0]
TRAVEL = ["US", "DE", "FR", "GB", "JP", "SG", "ES", "IT", "NL", "MX", "CA", "BR"]
ATTACK_ORIGINS = ["RU", "CN", "VN", "NG", "RO", "ID", "UA", "BR", "IN", "US"]

# hosting / VPN providers: (asn, org, countries where they have exits)
HOSTING = [
    (14061, "DIGITALOCEAN-ASN", ["US", "NL", "DE", "SG", "GB"]),
    (16276, "OVH SAS", ["FR", "CA", "DE", "GB"]),
    (24940, "Hetzner Online GmbH", ["DE"]),
    (20473, "The Constant Company, LLC", ["US", "NL", "JP", "SG"]),
    (51167, "Contabo GmbH", ["DE", "US"]),
    (9009, "M247 Europe SRL", ["RO", "GB", "NL", "US", "DE"]),
    (60068, "Datacamp Limited", ["GB", "US", "NL", "SG"]),
    (16509, "AMAZON-02", ["US", "DE", "IE", "SG", "JP"]),
    (8075, "MICROSOFT-CORP-MSN-AS-BLOCK", ["US", "NL", "IE"]),
    (396982, "GOOGLE-CLOUD-PLATFORM", ["US", "NL", "SG"]),
]
HOSTING_ASNS = [h[0] for h in HOSTING]
COMMERCIAL_VPN = [9009, 60068]
CORP_VPN = (16509, "AMAZON-02", "US")
COUNTRIES.setdefault("IE", (53.4, -8.2, 0, 0.0, [(5466, "Eircom Limited")]))

BROWSERS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:{v}.0) Gecko/20100101 Firefox/{v}.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.{m} Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36 Edg/{v}.0.0.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_{m} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.{m} Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:{v}.0) Gecko/20100101 Firefox/{v}.0",
]
TOOLS = [
    "python-requests/2.31.0",
    "curl/8.4.0",
    "Go-http-client/1.1",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36",
    "okhttp/4.9.3",
    "Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1)",
    "Hydra",
    "python-urllib3/1.26.18",
]
SERVICE_UAS = ["python-requests/2.28.1", "Go-http-client/2.0", "curl/7.88.1", "okhttp/4.10.0"]

FIRST = ["anna", "ben", "carla", "david", "emma", "felix", "grace", "hugo", "ines", "jonas", "kim",
         "leo", "maria", "noah", "olga", "paul", "quinn", "rosa", "sam", "tara", "umar", "vera",
         "wei", "xavier", "yuki", "zoe", "amir", "bea", "chen", "dara", "eli", "fatima", "gus",
         "hana", "ivan", "julia", "kofi", "lena", "mateo", "nina", "omar", "priya", "raj", "sofia"]
LAST = ["smith", "mueller", "martin", "brown", "garcia", "rossi", "tanaka", "silva", "kumar",
        "dubois", "jansen", "lopez", "nowak", "kim", "schmidt", "wilson", "sato", "costa", "singh",
        "moreau", "bakker", "fernandez", "ivanova", "chen", "okafor", "novak", "larsen", "ali"]

ATTACKS = ["password_spray", "credential_stuffing", "brute_force", "mfa_fatigue",
           "impossible_travel", "token_replay", "new_country_takeover"]
# campaigns per day per 1,000 users (at least two of each type per simulation)
ATTACK_RATES = {"password_spray": 0.3, "credential_stuffing": 0.15, "brute_force": 0.5,
                "mfa_fatigue": 1.0, "impossible_travel": 2.0, "token_replay": 2.0,
                "new_country_takeover": 2.0}
ACTIONS = ["user_login", "mfa_push_approved", "mfa_push_denied", "session_refresh"]
SOURCES = {"okta": ("okta", "okta.system"), "entra": ("azure", "azure.signinlogs"),
           "windows": ("system", "system.security"), "sshd": ("system", "system.auth")}
COUNTRY_NAMES = {"US": "United States", "DE": "Germany", "FR": "France", "GB": "United Kingdom",
                 "IN": "India", "BR": "Brazil", "JP": "Japan", "CA": "Canada", "NL": "Netherlands",
                 "ES": "Spain", "SG": "Singapore", "RU": "Russia", "CN": "China", "VN": "Vietnam",
                 "NG": "Nigeria", "RO": "Romania", "ID": "Indonesia", "UA": "Ukraine", "MX": "Mexico",
                 "IT": "Italy", "IE": "Ireland"}
DAY_MS = 86_400_000
HOUR_MS = 3_600_000


@dataclass
class Net:
    asn: int
    org: str
    country: str
    ip: str
    lat: float
    lon: float


@dataclass
class User:
    name: str
    country: str
    home: Net
    office: Net | None
    ua: str
    mobile_ua: str | None
    start_hour: float
    logins_per_day: float
    vpn: Net | None
    service: bool
    idp: str
    mfa: bool
    typo_p: float


def _prefix(asn: int) -> tuple[int, int]:
    """A stable public-looking /16 for an ASN (synthetic, not the ASN's real space)."""
    r = np.random.default_rng(asn)
    first = int(r.choice([23, 31, 37, 45, 46, 62, 77, 78, 81, 82, 85, 86, 89, 91, 93, 95, 109,
                          141, 145, 151, 176, 178, 185, 188, 193, 194, 195, 212, 213, 217]))
    return first, int(r.integers(0, 256))


def _ip(asn: int, rng: np.random.Generator) -> str:
    a, b = _prefix(asn)
    return f"{a}.{b}.{int(rng.integers(0, 256))}.{int(rng.integers(1, 255))}"


def _geo(country: str, rng: np.random.Generator, spread: float = 3.0) -> tuple[float, float]:
    lat, lon = COUNTRIES[country][0], COUNTRIES[country][1]
    return (round(float(np.clip(lat + rng.normal(0, spread / 2), -89, 89)), 4),
            round(float(((lon + rng.normal(0, spread)) + 180) % 360 - 180), 4))


def _residential(country: str, rng: np.random.Generator) -> Net:
    asn, org = COUNTRIES[country][4][int(rng.integers(len(COUNTRIES[country][4])))]
    lat, lon = _geo(country, rng)
    return Net(asn, org, country, _ip(asn, rng), lat, lon)


def _hosting(rng: np.random.Generator, asns=None, country=None) -> Net:
    choices = [h for h in HOSTING if asns is None or h[0] in asns]
    asn, org, cs = choices[int(rng.integers(len(choices)))]
    c = country if country in cs else cs[int(rng.integers(len(cs)))]
    lat, lon = _geo(c, rng, 1.0)
    return Net(asn, org, c, _ip(asn, rng), lat, lon)


def _browser(rng: np.random.Generator, mobile: bool | None = None) -> str:
    idx = [i for i, b in enumerate(BROWSERS) if mobile is None or (("Mobile" in b) == mobile)]
    b = BROWSERS[idx[int(rng.integers(len(idx)))]]
    return b.format(v=int(rng.integers(112, 122)), m=int(rng.integers(0, 6)))


def _km(a: Net, b: Net) -> float:
    p1, p2 = math.radians(a.lat), math.radians(b.lat)
    h = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(b.lon - a.lon) / 2) ** 2
    return 2 * 6371.0088 * math.asin(math.sqrt(min(1.0, h)))


def make_users(n: int, rng: np.random.Generator) -> list[User]:
    users, names = [], set()
    weights = np.array([COUNTRIES[c][3] for c in HOME])
    weights = weights / weights.sum()
    # shared egress: one or two office sites per home country, two corporate VPN gateways
    sites = {c: [_residential(c, rng) for _ in range(1 + int(rng.integers(0, 2)))] for c in HOME}
    corp_vpn = []
    for c in ("US", "IE"):
        lat, lon = _geo(c, rng, 0.5)
        corp_vpn.append(Net(16509, "AMAZON-02", c, _ip(16509, rng), lat, lon))
    n_service = max(2, n // 40)
    for i in range(n):
        service = i >= n - n_service
        if service:
            name = f"svc-{['backup', 'reporting', 'sync', 'deploy', 'monitor', 'etl', 'billing'][i % 7]}-{i:03d}"
        else:
            k = 0
            while True:
                name = f"{FIRST[int(rng.integers(len(FIRST)))]}.{LAST[int(rng.integers(len(LAST)))]}"
                if k > 20:
                    name = f"{name}{i}"
                if name not in names:
                    break
                k += 1
        names.add(name)
        country = str(rng.choice(HOME, p=weights))
        home = _residential(country, rng)
        if service:
            net = _hosting(rng, asns=[16509, 8075, 396982])
            users.append(User(name, net.country, net, None, SERVICE_UAS[i % len(SERVICE_UAS)], None,
                              float(rng.integers(0, 24)), 6.0, None, True, "sshd", False, 0.03))
            continue
        office = None
        r = rng.random()
        if r < 0.5:
            office = sites[country][int(rng.integers(len(sites[country])))]
        elif r < 0.62:
            office = corp_vpn[int(rng.integers(2))]
        vpn = _hosting(rng, asns=COMMERCIAL_VPN) if rng.random() < 0.12 else None
        typo_p = 0.25 if rng.random() < 0.1 else 0.05   # some users mistype often (and twice)
        users.append(User(
            name, country, home, office, _browser(rng, mobile=False),
            _browser(rng, mobile=True) if rng.random() < 0.6 else None,
            float(rng.uniform(6.5, 10.0)), float(rng.uniform(1.0, 3.5)), vpn, False,
            "okta" if rng.random() < 0.6 else "entra", rng.random() < 0.8, typo_p))
    return users


# An event before rendering: (ms, user, outcome, action, net, ua, src, label, attack, campaign)
def _ev(ms, user, outcome, action, net, ua, src, attack=None, campaign=None):
    return (int(ms), user, outcome, action, net, ua, src,
            "malicious" if attack else "benign", attack, campaign)


def _session(out, u: User, ms: int, net: Net, ua: str, rng, refreshes: float, src: str | None = None):
    src = src or u.idp
    if rng.random() < u.typo_p:   # typo, then success; sometimes twice
        out.append(_ev(ms, u.name, "failure", "user_login", net, ua, src))
        ms += int(rng.uniform(4000, 40000))
        if rng.random() < 0.3:
            out.append(_ev(ms, u.name, "failure", "user_login", net, ua, src))
            ms += int(rng.uniform(4000, 40000))
    out.append(_ev(ms, u.name, "success", "user_login", net, ua, src))
    if src == "windows" or src == "sshd":
        return
    if u.mfa and rng.random() < 0.9:
        ms += int(rng.uniform(3000, 20000))
        if rng.random() < 0.03:   # a push denied by mistake, then approved
            out.append(_ev(ms, u.name, "failure", "mfa_push_denied", net, ua, src))
            ms += int(rng.uniform(5000, 30000))
        out.append(_ev(ms, u.name, "success", "mfa_push_approved", net, ua, src))
    k = int(rng.poisson(refreshes)) if refreshes > 0 else 0
    if k:
        gaps = np.sort(rng.uniform(60_000, 8 * HOUR_MS, size=k)).astype(np.int64)
        for g in gaps.tolist():
            out.append(_ev(ms + g, u.name, "success", "session_refresh", net, ua, src))


def _benign_day(u: User, day_ms: int, weekday: int, rng, trip, d: int, rate: float) -> list:
    out: list = []
    if u.service:
        for k in range(int(rng.integers(3, 7))):
            ms = day_ms + int(((u.start_hour + 4 * k) % 24) * HOUR_MS + rng.uniform(0, 90_000))
            if rng.random() < u.typo_p:
                out.append(_ev(ms, u.name, "failure", "user_login", u.home, u.ua, "sshd"))
                ms += 30_000
            out.append(_ev(ms, u.name, "success", "user_login", u.home, u.ua, "sshd"))
        return out
    abroad = trip is not None and trip[0] < d <= trip[1]
    country = trip[2] if abroad else u.country
    tz = COUNTRIES[country][2]
    n = int(rng.poisson(0.4 if weekday >= 5 else u.logins_per_day))
    refreshes = max(0.0, rate / max(u.logins_per_day, 1.0) - 2.5)
    for _ in range(n):
        if weekday < 5 and rng.random() < 0.85:
            local = u.start_hour + rng.uniform(0, 9.5)
        else:
            local = rng.uniform(7, 23.5)
        if trip is not None and d == trip[0] and local > 10:      # flying out after 10:00
            continue
        if trip is not None and d == trip[1] + 1 and local < 18:  # flying home, back at 18:00
            continue
        ms = day_ms + int((local - tz) * HOUR_MS)
        src = None
        if abroad:
            net = _hosting(rng, country=country) if rng.random() < 0.15 else _residential(country, rng)
            ua = u.ua if rng.random() < 0.6 or not u.mobile_ua else u.mobile_ua
        else:
            r = rng.random()
            if u.vpn and r < 0.35:
                net = u.vpn
            elif u.office and weekday < 5 and r < 0.75:
                net = u.office
                if u.office.asn != 16509 and rng.random() < 0.25:
                    src = "windows"
            else:
                net = u.home
            ua = u.mobile_ua if u.mobile_ua and rng.random() < 0.3 else u.ua
        _session(out, u, ms, net, ua, rng, refreshes, src)
    return out


def _campaign_ms(t0, lo, hi, rng) -> int:
    return t0 + int(rng.integers(lo, hi)) * DAY_MS + int(rng.uniform(0, 24) * HOUR_MS)


def _people(users):
    return [u for u in users if not u.service]


def _password_spray(users, t0, lo, hi, rng, cid):
    ms = _campaign_ms(t0, lo, hi, rng)
    net = _hosting(rng, asns=[14061, 16276, 24940, 20473, 51167, 9009])
    ua = TOOLS[int(rng.integers(len(TOOLS)))] if rng.random() < 0.6 else _browser(rng, False)
    targets = _people(users)
    k = int(rng.integers(min(25, len(targets)), min(80, len(targets)) + 1))
    idx = rng.choice(len(targets), size=k, replace=False)
    out = []
    for _ in range(int(rng.integers(1, 3))):
        for j in idx:
            ms += int(rng.exponential(45_000))
            ok = rng.random() < 0.02
            out.append(_ev(ms, targets[j].name, "success" if ok else "failure", "user_login", net, ua,
                           targets[j].idp, "password_spray", cid))
        ms += int(rng.uniform(20, 90) * 60_000)
    return out


def _credential_stuffing(users, t0, lo, hi, rng, cid):
    ms = _campaign_ms(t0, lo, hi, rng)
    targets = _people(users)
    out = []
    headless = rng.random() < 0.5
    for _ in range(int(rng.integers(80, 250))):
        ms += int(rng.exponential(8000))
        c = ATTACK_ORIGINS[int(rng.integers(len(ATTACK_ORIGINS)))] if rng.random() < 0.6 else \
            HOME[int(rng.integers(len(HOME)))]
        net = _residential(c, rng) if rng.random() < 0.7 else _hosting(rng)
        ua = TOOLS[3] if headless and rng.random() < 0.7 else _browser(rng)
        if rng.random() < 0.6:
            t = targets[int(rng.integers(len(targets)))]
            name, src = t.name, t.idp
        else:   # stuffed lists hold many names that do not exist here
            name, src = f"{FIRST[int(rng.integers(len(FIRST)))]}{int(rng.integers(1, 99))}", "okta"
        ok = rng.random() < 0.03
        out.append(_ev(ms, name, "success" if ok else "failure", "user_login", net, ua, src,
                       "credential_stuffing", cid))
    return out


def _brute_force(users, t0, lo, hi, rng, cid):
    ms = _campaign_ms(t0, lo, hi, rng)
    r = rng.random()
    if r < 0.25:
        svc = [u for u in users if u.service]
        u = svc[int(rng.integers(len(svc)))]
        src = "sshd"
    else:
        targets = _people(users)
        u = targets[int(rng.integers(len(targets)))]
        src = "windows" if r < 0.45 else u.idp
    c = ATTACK_ORIGINS[int(rng.integers(len(ATTACK_ORIGINS)))]
    net = _hosting(rng) if rng.random() < 0.6 else _residential(c, rng)
    ua = TOOLS[int(rng.integers(len(TOOLS)))] if rng.random() < 0.7 else _browser(rng, False)
    out = []
    for _ in range(int(rng.integers(15, 60))):
        ms += int(rng.exponential(4000)) + 200
        out.append(_ev(ms, u.name, "failure", "user_login", net, ua, src, "brute_force", cid))
    if rng.random() < 0.7:
        ms += int(rng.exponential(4000)) + 200
        out.append(_ev(ms, u.name, "success", "user_login", net, ua, src, "brute_force", cid))
    return out


def _attacker_net(u: User, rng, hosting_p=0.4) -> Net:
    others = [c for c in ATTACK_ORIGINS if c != u.country]
    c = others[int(rng.integers(len(others)))]
    return _hosting(rng, country=c) if rng.random() < hosting_p else _residential(c, rng)


def _victim_time(u: User, t0, lo, hi, rng, off_hours_p=0.6) -> int:
    day = t0 + int(rng.integers(lo, hi)) * DAY_MS
    local = rng.uniform(0, 6) if rng.random() < off_hours_p else rng.uniform(6, 24)
    return day + int((local - COUNTRIES[u.country][2]) * HOUR_MS)


def _mfa_fatigue(users, t0, lo, hi, rng, cid):
    targets = [u for u in _people(users) if u.mfa]
    u = targets[int(rng.integers(len(targets)))]
    net = _attacker_net(u, rng)
    ua = _browser(rng, mobile=False)
    ms = _victim_time(u, t0, lo, hi, rng, 0.5)
    out = [_ev(ms, u.name, "success", "user_login", net, ua, u.idp, "mfa_fatigue", cid)]
    for _ in range(int(rng.integers(3, 16))):
        ms += int(rng.uniform(20_000, 90_000))
        out.append(_ev(ms, u.name, "failure", "mfa_push_denied", net, ua, u.idp, "mfa_fatigue", cid))
    if rng.random() < 0.8:
        ms += int(rng.uniform(20_000, 90_000))
        out.append(_ev(ms, u.name, "success", "mfa_push_approved", net, ua, u.idp, "mfa_fatigue", cid))
        for _ in range(int(rng.integers(0, 4))):
            ms += int(rng.uniform(60_000, 1_800_000))
            out.append(_ev(ms, u.name, "success", "session_refresh", net, ua, u.idp, "mfa_fatigue", cid))
    return out


def _impossible_travel(users, t0, lo, hi, rng, cid):
    u = _people(users)[int(rng.integers(len(_people(users))))]
    far = [c for c in ATTACK_ORIGINS + TRAVEL
           if abs(COUNTRIES[c][1] - COUNTRIES[u.country][1]) > 60 and c != u.country]
    c = far[int(rng.integers(len(far)))]
    day = t0 + int(rng.integers(lo, hi)) * DAY_MS
    ms = day + int((u.start_hour + rng.uniform(0, 6) - COUNTRIES[u.country][2]) * HOUR_MS)
    out = [_ev(ms, u.name, "success", "user_login", u.home, u.ua, u.idp)]   # the real user
    ms += int(rng.uniform(5, 60) * 60_000)
    net = _residential(c, rng) if rng.random() < 0.5 else _hosting(rng, country=c)
    ua = u.ua if rng.random() < 0.3 else _browser(rng)
    out.append(_ev(ms, u.name, "success", "user_login", net, ua, u.idp, "impossible_travel", cid))
    return out


def _token_replay(users, t0, lo, hi, rng, cid):
    u = _people(users)[int(rng.integers(len(_people(users))))]
    day = t0 + int(rng.integers(lo, hi)) * DAY_MS
    ms = day + int((u.start_hour + rng.uniform(0, 6) - COUNTRIES[u.country][2]) * HOUR_MS)
    out = [_ev(ms, u.name, "success", "user_login", u.home, u.ua, u.idp)]   # the real user
    net = _attacker_net(u, rng, hosting_p=0.7)
    ua = u.ua if rng.random() < 0.7 else _browser(rng)    # the stolen cookie, often with its UA
    ms += int(rng.uniform(10, 180) * 60_000)
    for _ in range(int(rng.integers(1, 5))):
        out.append(_ev(ms, u.name, "success", "session_refresh", net, ua, u.idp, "token_replay", cid))
        ms += int(rng.uniform(1, 30) * 60_000)
    return out


def _new_country_takeover(users, t0, lo, hi, rng, cid):
    u = _people(users)[int(rng.integers(len(_people(users))))]
    net = _attacker_net(u, rng)
    ua = _browser(rng, mobile=rng.random() < 0.3)
    ms = _victim_time(u, t0, lo, hi, rng)
    out = []
    for _ in range(int(rng.integers(1, 4))):
        out.append(_ev(ms, u.name, "success", "user_login", net, ua, u.idp, "new_country_takeover", cid))
        ms += int(rng.uniform(5, 120) * 60_000)
    return out


ATTACK_FNS = {"password_spray": _password_spray, "credential_stuffing": _credential_stuffing,
              "brute_force": _brute_force, "mfa_fatigue": _mfa_fatigue,
              "impossible_travel": _impossible_travel, "token_replay": _token_replay,
              "new_country_takeover": _new_country_takeover}


def _ts(ms: int) -> str:
    t = datetime.fromtimestamp(ms // 1000, tz=timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def to_ecs(e) -> dict:
    ms, user, outcome, action, net, ua, src, label, attack, campaign = e
    module, dataset = SOURCES[src]
    return {
        "@timestamp": _ts(ms),
        "event": {"category": ["authentication"], "type": ["start"], "action": action,
                  "outcome": outcome, "module": module, "dataset": dataset},
        "user": {"name": user},
        "source": {"ip": net.ip, "geo": {"country_iso_code": net.country,
                                          "location": {"lat": net.lat, "lon": net.lon}},
                   "as": {"number": net.asn, "organization": {"name": net.org}}},
        "user_agent": {"original": ua},
        "vigil": {"sim": {"label": label, "attack": attack, "campaign": campaign}},
    }


_OKTA_TYPES = {"user_login": "user.session.start", "mfa_push_approved": "user.authentication.auth_via_mfa",
               "mfa_push_denied": "user.mfa.okta_verify.deny_push", "session_refresh": "user.session.access_admin_app"}


def to_raw(e) -> dict:
    """The vendor shape of an event (labels kept under `vigil.sim`)."""
    ms, user, outcome, action, net, ua, src, label, attack, campaign = e
    ts = _ts(ms)
    sim = {"sim": {"label": label, "attack": attack, "campaign": campaign}}
    ok = outcome == "success"
    if src == "okta":
        return {"uuid": f"{ms:x}-{zlib.crc32((user + net.ip).encode()):08x}", "published": ts,
                "eventType": "user.session.start" if action == "user_login" else _OKTA_TYPES[action],
                "displayMessage": {"user_login": "User login to Okta", "mfa_push_approved": "Authentication of user via MFA",
                                   "mfa_push_denied": "User rejected Okta push verify", "session_refresh": "User session refreshed"}[action],
                "outcome": {"result": "SUCCESS" if ok else "FAILURE",
                            **({} if ok else {"reason": "INVALID_CREDENTIALS" if action == "user_login" else "USER_REJECTED_OKTA_VERIFY_PUSH"})},
                "actor": {"alternateId": f"{user}@example.com", "displayName": user, "type": "User"},
                "client": {"ipAddress": net.ip, "userAgent": {"rawUserAgent": ua},
                           "geographicalContext": {"country": COUNTRY_NAMES.get(net.country, net.country),
                                                   "geolocation": {"lat": net.lat, "lon": net.lon}}},
                "securityContext": {"asNumber": net.asn, "asOrg": net.org, "isProxy": False},
                "vigil": sim}
    if src == "entra":
        code = 0 if ok else (50126 if action == "user_login" else 500121)
        return {"time": ts, "category": "SignInLogs" if action != "session_refresh" else "NonInteractiveUserSignInLogs",
                "operationName": "Sign-in activity", "resultType": str(code),
                "properties": {"userPrincipalName": f"{user}@example.com", "ipAddress": net.ip,
                               "userAgent": ua, "autonomousSystemNumber": net.asn,
                               "status": {"errorCode": code},
                               "authenticationRequirement": "multiFactorAuthentication" if action.startswith("mfa") else "singleFactorAuthentication",
                               "location": {"countryOrRegion": net.country,
                                            "geoCoordinates": {"latitude": net.lat, "longitude": net.lon}}},
                "vigil": sim}
    if src == "windows":
        return {"@timestamp": ts, "event": {"code": "4624" if ok else "4625", "provider": "Microsoft-Windows-Security-Auditing"},
                "winlog": {"channel": "Security", "event_id": "4624" if ok else "4625", "computer_name": "WKS-0042.corp.example.com",
                           "event_data": {"TargetUserName": user, "TargetDomainName": "CORP", "IpAddress": net.ip,
                                          "LogonType": "10", **({} if ok else {"Status": "0xc000006d", "SubStatus": "0xc000006a"})}},
                "vigil": sim}
    port = 30000 + ms % 30000
    method = "publickey" if ua in SERVICE_UAS else "password"
    msg = (f"Accepted {method} for {user} from {net.ip} port {port} ssh2" if ok
           else f"Failed password for {user} from {net.ip} port {port} ssh2")
    return {"@timestamp": ts, "host": {"hostname": "bastion-1"}, "process": {"name": "sshd", "pid": 1000 + ms % 30000},
            "message": msg, "vigil": sim}


def _key(e):
    return (e[0], e[1], e[4].ip)


def stream_raw(n_users: int = 200, days: int = 28, seed: int = 7, start: str = "2026-01-05T00:00:00Z",
               attacks: bool = True, rate: float = 8.0):
    """Internal event tuples in time order, generated day by day (bounded memory)."""
    rng = np.random.default_rng(seed)
    t0 = int(datetime.strptime(start, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()) * 1000
    wd0 = datetime.fromtimestamp(t0 // 1000, tz=timezone.utc).weekday()
    users = make_users(n_users, rng)
    trips = {}
    for i, u in enumerate(users):
        if not u.service and rng.random() < 0.12 and days >= 2:
            d0 = int(rng.integers(0, max(1, days - 3)))
            choices = [c for c in TRAVEL if c != u.country]
            trips[i] = (d0, d0 + int(rng.integers(2, 6)), choices[int(rng.integers(len(choices)))])
    pending: list = []
    if attacks:
        for kind in ATTACKS:
            n = max(2, int(round(days * ATTACK_RATES[kind] * n_users / 1000)))
            for k in range(n):
                lo = (k * days) // n
                hi = max(lo + 1, ((k + 1) * days) // n)
                pending.extend(ATTACK_FNS[kind](users, t0, lo, hi, rng, f"{kind}-{k:03d}"))
    for d in range(days):
        day_ms = t0 + d * DAY_MS
        wd = (wd0 + d) % 7
        for i, u in enumerate(users):
            pending.extend(_benign_day(u, day_ms, wd, rng, trips.get(i), d, rate))
        pending.sort(key=_key)   # stable: equal keys keep their generation order
        # nothing generated for a later day lands before this watermark (time zones <= +9 h)
        water = day_ms + DAY_MS - 12 * HOUR_MS
        cut = bisect_left(pending, water, key=lambda e: e[0])
        yield from pending[:cut]
        del pending[:cut]
    yield from pending


def stream(n_users: int = 200, days: int = 28, seed: int = 7, start: str = "2026-01-05T00:00:00Z",
           attacks: bool = True, rate: float = 8.0, raw: bool = False):
    """ECS (or vendor-shaped, `raw`) documents in time order, day by day."""
    f = to_raw if raw else to_ecs
    for e in stream_raw(n_users, days, seed, start, attacks, rate):
        yield f(e)


def simulate(n_users: int = 200, days: int = 28, seed: int = 7, start: str = "2026-01-05T00:00:00Z",
             attacks: bool = True, rate: float = 8.0) -> list[dict]:
    """All events, sorted by @timestamp (then user name, source IP)."""
    return list(stream(n_users, days, seed, start, attacks, rate))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Simulate authentication events (NDJSON on stdout)")
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--days", type=int, default=28)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--start", default="2026-01-05T00:00:00Z")
    ap.add_argument("--rate", type=float, default=8.0, help="events per working user-day (approx.)")
    ap.add_argument("--no-attacks", action="store_true")
    ap.add_argument("--raw", action="store_true", help="vendor shapes (Okta, Entra ID, Windows, sshd)")
    ap.add_argument("--out", help="file to write (default: stdout)")
    args = ap.parse_args(argv)
    out = open(args.out, "w", encoding="utf-8") if args.out else sys.stdout
    dumps = json.JSONEncoder(separators=(",", ":")).encode
    buf = []
    for e in stream(args.users, args.days, args.seed, args.start, not args.no_attacks, args.rate, args.raw):
        buf.append(dumps(e))
        if len(buf) >= 10000:
            out.write("\n".join(buf) + "\n")
            buf.clear()
    if buf:
        out.write("\n".join(buf) + "\n")
    if args.out:
        out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
