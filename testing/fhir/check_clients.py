#!/usr/bin/env python3
"""Check the vault's FHIR API with two independent Python clients.

1. Every resource the API returns (the CapabilityStatement, reads, vreads,
   search, `$everything` and history Bundles and each of their entries,
   OperationOutcomes of errors, AuditEvents, a transaction-response) is
   validated against the FHIR R4 (4.0.1) models of `fhir.resources`, and
   against the FHIR JSON rules those models do not check (no empty arrays,
   objects or strings, no nulls).
2. The SMART on FHIR client `fhirclient` reads the Patient, searches Patients
   by family name and Observations by patient (following the Bundles' `next`
   links), and the results must match the expectations given here.

Run by crates/caduceus-server/tests/fhir_python.rs against a live server;
pinned versions are in testing/fhir/requirements.txt.

Exit status: 0 all checks passed; 1 a check failed (each failure is printed);
2 bad arguments; 3 a required module is missing.
"""

import argparse
import json
import sys
import urllib.parse
import uuid

MISSING_MODULE = 3


def pinned_session(session, ca):
    """Trust exactly the server's certificate. `trust_env` off: with it on,
    requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE from the environment
    override `session.verify`, and would route loopback through a proxy."""
    session.trust_env = False
    session.verify = ca
    return session


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", required=True, help="FHIR base URL, e.g. https://127.0.0.1:8443/fhir")
    p.add_argument("--token", required=True, help="bearer token of a user with a care relationship to --patient")
    p.add_argument("--ca", required=True, help="PEM file of the server's certificate (trust anchor)")
    p.add_argument("--patient", required=True, help="id of the seeded Patient")
    p.add_argument("--family", required=True, help="the Patient's family name")
    p.add_argument("--expect-family-count", type=int, default=1, help="Patients with that family name")
    p.add_argument("--expect-observations", type=int, required=True, help="Observations of the Patient")
    p.add_argument(
        "--types",
        default="",
        help="comma-separated resource types that were seeded; each is searched, read and validated",
    )
    p.add_argument("--expect-count", action="append", default=[], metavar="TYPE=N",
                   help="the number of resources of TYPE in the Patient's compartment (repeatable)")
    p.add_argument("--other-patient", help="a Patient the token has no relationship with (expects 403)")
    p.add_argument("--auditor-token", help="a token that may read AuditEvents (validates them)")
    p.add_argument("--write", action="store_true",
                   help="also POST a transaction Bundle (an Observation) and validate the transaction-response")
    p.add_argument("--page-size", type=int, default=5, help="_count used for paged searches")
    return p.parse_args(argv)


class Failed(Exception):
    """One check failed; the message says which resource and why."""


class Checker:
    def __init__(self, args, requests, models_version, get_model_class, validation_error):
        self.args = args
        self.base = args.base.rstrip("/") + "/"
        self.requests = requests
        self.models_version = models_version
        self.get_model_class = get_model_class
        self.validation_error = validation_error
        self.session = pinned_session(requests.Session(), args.ca)
        self.session.headers.update({"Authorization": f"Bearer {args.token}", "Accept": "application/fhir+json"})
        self.failures = []
        self.validated = {}  # resource type -> count
        self.summary = []
        self.conditional_refs = 0

    # ----- plumbing -------------------------------------------------------

    def check(self, name, fn):
        """Run one named check; a failure is recorded and the others go on."""
        try:
            result = fn()
            if result:
                self.summary.append(f"ok   {name}: {result}")
            else:
                self.summary.append(f"ok   {name}")
        except Failed as e:
            self.failures.append(f"{name}: {e}")
            self.summary.append(f"FAIL {name}")
        except Exception as e:  # a client library raising is a failure too
            self.failures.append(f"{name}: {type(e).__name__}: {e}")
            self.summary.append(f"FAIL {name}")

    def url(self, path):
        return urllib.parse.urljoin(self.base, path)

    def get(self, path, expect=200, session=None):
        session = session or self.session
        url = path if path.startswith("https://") or path.startswith("http://") else self.url(path)
        response = session.get(url)
        return self.answer(response, "GET", url, expect)

    def answer(self, response, method, url, expect):
        if response.status_code != expect:
            raise Failed(f"{method} {url}: status {response.status_code}, expected {expect}: {response.text[:500]}")
        content_type = response.headers.get("content-type", "")
        if not content_type.startswith("application/fhir+json"):
            raise Failed(f"{method} {url}: content-type {content_type!r}, expected application/fhir+json")
        try:
            return response, response.json()
        except ValueError as e:
            raise Failed(f"{method} {url}: the body is not JSON: {e}")

    # ----- validation -----------------------------------------------------

    def validate(self, resource, where):
        """Validate one resource with the R4 models and the JSON rules."""
        if not isinstance(resource, dict):
            raise Failed(f"{where}: expected a resource (JSON object), got {type(resource).__name__}")
        resource_type = resource.get("resourceType")
        label = f"{resource_type}/{resource.get('id', '(no id)')}"
        try:
            model = self.get_model_class(resource_type)
        except (KeyError, LookupError):
            raise Failed(f"{where}: {label}: `{resource_type}` is not an R4 resource type")
        parse = getattr(model, "model_validate", None) or model.parse_obj
        try:
            parse(resource)
        except self.validation_error as e:
            raise Failed(f"{where}: {label} is not valid FHIR R4 ({self.models_version}):\n{e}")
        problems = json_rule_violations(resource)
        if problems:
            raise Failed(f"{where}: {label} breaks the FHIR JSON rules: " + "; ".join(problems[:10]))
        self.validated[resource_type] = self.validated.get(resource_type, 0) + 1
        return resource

    def validate_bundle(self, bundle, where, bundle_type):
        """Validate a Bundle, then each entry's resource on its own so that a
        failure names the entry."""
        self.validate(bundle, where)
        if bundle.get("resourceType") != "Bundle":
            raise Failed(f"{where}: expected a Bundle, got {bundle.get('resourceType')}")
        if bundle.get("type") != bundle_type:
            raise Failed(f"{where}: Bundle.type is {bundle.get('type')!r}, expected {bundle_type!r}")
        entries = bundle.get("entry", [])
        for i, entry in enumerate(entries):
            if "resource" in entry:
                self.validate(entry["resource"], f"{where} entry[{i}]")
                self.check_references(entry["resource"], f"{where} entry[{i}]")
            full_url = entry.get("fullUrl")
            resource = entry.get("resource") or {}
            if full_url and resource.get("id") and resource.get("resourceType") != "OperationOutcome":
                expected = self.url(f"{resource['resourceType']}/{resource['id']}")
                if full_url != expected:
                    raise Failed(f"{where} entry[{i}]: fullUrl {full_url!r} does not name the resource ({expected!r})")
        for link in bundle.get("link", []):
            url = link.get("url", "")
            if not url.startswith(self.base):
                raise Failed(f"{where}: Bundle.link {link.get('relation')} url {url!r} is not under {self.base!r}")
        if "total" in bundle and bundle_type not in ("searchset", "history"):
            raise Failed(f"{where}: Bundle.total is only for searchset and history (bdl-1)")
        return entries

    def check_references(self, resource, where):
        """Bundle-local references must have been resolved on import."""
        for ref in references(resource):
            if ref.startswith("urn:uuid:") or ref.startswith("urn:oid:"):
                raise Failed(f"{where}: {resource.get('resourceType')}/{resource.get('id')} keeps the "
                             f"bundle-local reference {ref!r}")
            if "?" in ref:
                self.conditional_refs += 1

    def search_all(self, path, where):
        """GET a search and every page after it through the `next` links;
        returns the entries of all pages."""
        entries = []
        seen = set()
        url = path
        pages = 0
        while url:
            if url in seen:
                raise Failed(f"{where}: the next link loops back to {url}")
            seen.add(url)
            _, bundle = self.get(url)
            pages += 1
            entries.extend(self.validate_bundle(bundle, f"{where} page {pages}", "searchset"))
            url = next((l["url"] for l in bundle.get("link", []) if l.get("relation") == "next"), None)
            if pages > 200:
                raise Failed(f"{where}: more than 200 pages")
        return entries, pages

    # ----- (a) the API's resources validate ----------------------------------

    def capability(self):
        # Public: no token needed.
        plain = pinned_session(self.requests.Session(), self.args.ca)
        _, cs = self.get("metadata", session=plain)
        self.validate(cs, "GET metadata")
        if cs.get("resourceType") != "CapabilityStatement":
            raise Failed(f"metadata: expected a CapabilityStatement, got {cs.get('resourceType')}")
        if cs.get("fhirVersion") != "4.0.1":
            raise Failed(f"CapabilityStatement.fhirVersion is {cs.get('fhirVersion')!r}, expected 4.0.1")
        self.capabilities = {r["type"]: r for rest in cs.get("rest", []) for r in rest.get("resource", [])}
        missing = [t for t in self.types() if t not in self.capabilities]
        if missing:
            raise Failed(f"CapabilityStatement does not list the seeded types {missing}")
        return f"{len(self.capabilities)} resource types"

    def types(self):
        return [t for t in self.args.types.split(",") if t]

    def patient_read(self):
        response, patient = self.get(f"Patient/{self.args.patient}")
        self.validate(patient, "GET Patient/{id}")
        if patient.get("id") != self.args.patient:
            raise Failed(f"Patient read returned id {patient.get('id')!r}")
        version = (patient.get("meta") or {}).get("versionId")
        etag = response.headers.get("etag")
        if etag != f'W/"{version}"':
            raise Failed(f"ETag {etag!r} does not match meta.versionId {version!r}")
        if not response.headers.get("last-modified"):
            raise Failed("Patient read has no Last-Modified header")
        families = [n.get("family") for n in patient.get("name", [])]
        if self.args.family not in families:
            raise Failed(f"Patient's family names {families} do not include {self.args.family!r}")
        _, first = self.get(f"Patient/{self.args.patient}/_history/1")
        self.validate(first, "GET Patient/{id}/_history/1")
        return f"version {version}"

    def patient_search(self):
        query = urllib.parse.urlencode({"family": self.args.family})
        entries, _ = self.search_all(f"Patient?{query}", "GET Patient?family")
        ids = [e["resource"]["id"] for e in entries if e.get("search", {}).get("mode") == "match"]
        if self.args.patient not in ids:
            raise Failed(f"Patient?family={self.args.family} did not find Patient/{self.args.patient}: {ids}")
        if len(ids) != self.args.expect_family_count:
            raise Failed(f"Patient?family={self.args.family}: {len(ids)} matches, expected "
                         f"{self.args.expect_family_count}")
        return f"{len(ids)} match"

    def observations(self):
        patient = self.args.patient
        where = "GET Observation?patient (paged)"
        entries, pages = self.search_all(f"Observation?patient={patient}&_count={self.args.page_size}", where)
        ids = [e["resource"]["id"] for e in entries if e.get("search", {}).get("mode") == "match"]
        if len(ids) != len(set(ids)):
            raise Failed(f"{where}: pages repeat resources")
        if len(ids) != self.args.expect_observations:
            raise Failed(f"{where}: {len(ids)} Observations, expected {self.args.expect_observations}")
        for e in entries:
            subject = e["resource"].get("subject", {}).get("reference")
            if subject != f"Patient/{patient}":
                raise Failed(f"{where}: Observation/{e['resource']['id']} has subject {subject!r}")
        _, counted = self.get(f"Observation?patient={patient}&_count=1&_total=accurate")
        self.validate_bundle(counted, "GET Observation?_total=accurate", "searchset")
        if counted.get("total") != self.args.expect_observations:
            raise Failed(f"Observation?_total=accurate: total {counted.get('total')}, expected "
                         f"{self.args.expect_observations}")
        _, included = self.get(f"Observation?patient={patient}&_count=2&_include=Observation:patient")
        entries = self.validate_bundle(included, "GET Observation?_include=Observation:patient", "searchset")
        if not any(e.get("search", {}).get("mode") == "include" and e["resource"]["resourceType"] == "Patient"
                   for e in entries):
            raise Failed("Observation?_include=Observation:patient did not include the Patient")
        return f"{len(ids)} in {pages} pages"

    def everything(self):
        self.compartment = {}
        url = f"Patient/{self.args.patient}/$everything"
        pages = 0
        while url:
            _, bundle = self.get(url)
            pages += 1
            for entry in self.validate_bundle(bundle, f"GET $everything page {pages}", "searchset"):
                r = entry["resource"]
                self.compartment.setdefault(r["resourceType"], set()).add(r["id"])
            url = next((l["url"] for l in bundle.get("link", []) if l.get("relation") == "next"), None)
        if self.args.patient not in self.compartment.get("Patient", set()):
            raise Failed("$everything does not include the Patient")
        for spec in self.args.expect_count:
            resource_type, _, n = spec.partition("=")
            found = len(self.compartment.get(resource_type, set()))
            if found != int(n):
                raise Failed(f"$everything has {found} {resource_type}, expected {n}")
        total = sum(len(v) for v in self.compartment.values())
        return f"{total} resources of {len(self.compartment)} types"

    def empty_search(self):
        # A search that matches nothing is still a valid searchset Bundle
        # (with no `entry`: FHIR JSON has no empty arrays).
        query = f"Observation?patient={self.args.patient}&code=http://loinc.org|00000-0"
        entries, _ = self.search_all(query, "GET Observation?code=(no match)")
        if entries:
            raise Failed(f"{query} matched {len(entries)} entries, expected none")
        return "no entries"

    def export(self):
        _, bundle = self.get(f"Patient/{self.args.patient}/$export")
        entries = self.validate_bundle(bundle, "GET Patient/{id}/$export", "collection")
        exported = {}
        for e in entries:
            exported.setdefault(e["resource"]["resourceType"], set()).add(e["resource"]["id"])
        if exported != getattr(self, "compartment", exported):
            raise Failed("$export and $everything disagree on the patient's resources")
        return f"{len(entries)} resources"

    def history(self):
        _, bundle = self.get(f"Patient/{self.args.patient}/_history")
        entries = self.validate_bundle(bundle, "GET Patient/{id}/_history", "history")
        if not entries:
            raise Failed("the history Bundle is empty")
        for i, e in enumerate(entries):
            if "request" not in e or "response" not in e:
                raise Failed(f"history entry[{i}] lacks request or response")
        return f"{len(entries)} versions"

    def errors(self):
        cases = [
            (f"Patient/{uuid.uuid4()}", 404, "not-found"),
            # Any well-formed type name is stored intact (the issue asks for
            # unknown types to be kept); a malformed one is not a type at all.
            ("not-a-type", 404, "not-found"),
            ("Patient?birthdate=not-a-date", 400, "invalid"),
        ]
        if self.args.other_patient:
            cases.append((f"Patient/{self.args.other_patient}", 403, "forbidden"))
        problems = []
        for path, status, code in cases:
            try:
                _, outcome = self.get(path, expect=status)
                self.validate(outcome, f"GET {path} ({status})")
                if outcome.get("resourceType") != "OperationOutcome":
                    raise Failed(f"GET {path}: a {status} answered with {outcome.get('resourceType')}")
                codes = [i.get("code") for i in outcome.get("issue", [])]
                if code not in codes:
                    raise Failed(f"GET {path}: OperationOutcome issue codes {codes}, expected {code!r}")
            except Failed as e:
                problems.append(str(e))
        if problems:
            raise Failed("\n  ".join(problems))
        return f"{len(cases)} OperationOutcomes"

    def withheld_search(self):
        # A search reaching a record the user may not see is answered with
        # what they may see, and an OperationOutcome saying results were
        # left out (search.mode `outcome`).
        query = f"Encounter?patient={self.args.other_patient}"
        entries, _ = self.search_all(query, f"GET {query.split('=')[0]}=(no relationship)")
        matches = [e for e in entries if e.get("search", {}).get("mode") == "match"]
        outcomes = [e["resource"] for e in entries if e.get("search", {}).get("mode") == "outcome"]
        if matches:
            raise Failed(f"{query}: {len(matches)} Encounters of a record without a relationship were returned")
        if not any(o.get("resourceType") == "OperationOutcome" for o in outcomes):
            raise Failed(f"{query}: no OperationOutcome says that results were withheld")
        return "withheld, with an OperationOutcome"

    def seeded_type(self, resource_type):
        capability = self.capabilities.get(resource_type, {})
        params = {p["name"] for p in capability.get("searchParam", [])}
        in_compartment = resource_type in getattr(self, "compartment", {})
        if in_compartment and "patient" in params and resource_type != "Patient":
            query = f"{resource_type}?patient={self.args.patient}&_count={self.args.page_size}"
        else:
            query = f"{resource_type}?_count={self.args.page_size}"
        entries, pages = self.search_all(query, f"GET {resource_type}?")
        ids = [e["resource"]["id"] for e in entries if e.get("search", {}).get("mode") == "match"]
        if not ids:
            raise Failed(f"{query} found nothing")
        if in_compartment and "patient" in params and resource_type != "Patient":
            expected = self.compartment[resource_type]
            if set(ids) != expected:
                raise Failed(f"{query} found {len(ids)}, $everything has {len(expected)}")
        response, resource = self.get(f"{resource_type}/{ids[0]}")
        self.validate(resource, f"GET {resource_type}/{{id}}")
        self.check_references(resource, f"GET {resource_type}/{{id}}")
        if resource.get("id") != ids[0]:
            raise Failed(f"GET {resource_type}/{ids[0]} returned id {resource.get('id')!r}")
        return f"{len(ids)} found in {pages} pages, one read"

    def audit_events(self):
        auditor = pinned_session(self.requests.Session(), self.args.ca)
        auditor.headers.update({"Authorization": f"Bearer {self.args.auditor_token}",
                                "Accept": "application/fhir+json"})
        _, bundle = self.get(f"AuditEvent?patient={self.args.patient}", session=auditor)
        entries = self.validate_bundle(bundle, "GET AuditEvent?patient", "searchset")
        if not entries:
            raise Failed("AuditEvent?patient found no AuditEvent although the patient's record was read")
        first = entries[0]["resource"]
        _, event = self.get(f"AuditEvent/{first['id']}", session=auditor)
        self.validate(event, "GET AuditEvent/{id}")
        return f"{len(entries)} AuditEvents"

    def transaction(self):
        patient = self.args.patient
        observation = {
            "resourceType": "Observation",
            "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                      "code": "vital-signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
            "subject": {"reference": f"Patient/{patient}"},
            "effectiveDateTime": "2026-01-01T09:30:00Z",
            "valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"},
        }
        full_url = f"urn:uuid:{uuid.uuid4()}"
        bundle = {"resourceType": "Bundle", "type": "transaction",
                  "entry": [{"fullUrl": full_url, "resource": observation,
                             "request": {"method": "POST", "url": "Observation"}}]}
        self.validate(bundle, "the transaction we send")
        response = self.session.post(self.base.rstrip("/"), data=json.dumps(bundle),
                                     headers={"Content-Type": "application/fhir+json"})
        _, reply = self.answer(response, "POST", self.base, 200)
        entries = self.validate_bundle(reply, "POST transaction", "transaction-response")
        if len(entries) != 1:
            raise Failed(f"transaction-response has {len(entries)} entries, expected 1")
        status = entries[0].get("response", {}).get("status", "")
        location = entries[0].get("response", {}).get("location", "")
        if not status.startswith("201") or not location.startswith("Observation/"):
            raise Failed(f"transaction-response entry: status {status!r}, location {location!r}")
        _, created = self.get(location)
        self.validate(created, "GET the transaction's Observation")
        return location

    # ----- (b) the SMART client reads and searches ---------------------------

    def smart_client(self):
        from fhirclient import client
        from fhirclient.models.encounter import Encounter
        from fhirclient.models.observation import Observation
        from fhirclient.models.patient import Patient

        smart = client.FHIRClient(settings={"app_id": "caduceus-check", "api_base": self.base})
        server = smart.server
        server.session.headers.update({"Authorization": f"Bearer {self.args.token}"})
        pinned_session(server.session, self.args.ca)
        # Fetches and parses the CapabilityStatement with fhirclient's models.
        smart.prepare()
        statement = server.capabilityStatement
        if statement.fhirVersion != "4.0.1":
            raise Failed(f"fhirclient read fhirVersion {statement.fhirVersion!r}")

        patient = Patient.read(self.args.patient, server)
        if patient.id != self.args.patient:
            raise Failed(f"fhirclient Patient.read returned id {patient.id!r}")
        if self.args.family not in [n.family for n in patient.name or []]:
            raise Failed(f"fhirclient Patient.read: family {self.args.family!r} not among the names")

        search = Patient.where(struct={"family": self.args.family})
        found = list(search.perform_resources_iter(server))
        ids = [p.id for p in found if p.resource_type == "Patient"]
        if self.args.patient not in ids or len(ids) != self.args.expect_family_count:
            raise Failed(f"fhirclient Patient.where(family={self.args.family!r}): {ids}, expected "
                         f"{self.args.expect_family_count} including {self.args.patient}")

        search = Observation.where(struct={"patient": self.args.patient, "_count": str(self.args.page_size)})
        pages = list(search.perform_iter(server))
        observations = [e.resource for b in pages for e in (b.entry or []) if e.resource is not None]
        if len(observations) != self.args.expect_observations:
            raise Failed(f"fhirclient Observation.where(patient=...): {len(observations)} in {len(pages)} pages, "
                         f"expected {self.args.expect_observations}")
        expected_pages = -(-self.args.expect_observations // self.args.page_size)
        if len(pages) != max(expected_pages, 1):
            raise Failed(f"fhirclient followed {len(pages)} pages, expected {expected_pages}")
        for o in observations:
            if not isinstance(o, Observation) or o.subject.reference != f"Patient/{self.args.patient}":
                raise Failed(f"fhirclient: Observation/{getattr(o, 'id', '?')} is not the patient's")

        search = Observation.where(struct={"patient": self.args.patient, "_count": "2"}).include("subject")
        first = search._read_bundle(server)
        if not any(isinstance(e.resource, Patient) and e.search.mode == "include" for e in first.entry or []):
            raise Failed("fhirclient: _include=Observation:subject did not bring the Patient")

        encounters = list(Encounter.where(struct={"patient": self.args.patient}).perform_resources_iter(server))
        if not encounters:
            raise Failed("fhirclient: the patient has no Encounters")
        encounter = Encounter.read(encounters[0].id, server)
        if encounter.subject.reference != f"Patient/{self.args.patient}":
            raise Failed(f"fhirclient: Encounter/{encounter.id} subject {encounter.subject.reference!r}")

        return (f"Patient.read, Patient.where -> {len(ids)}, Observation.where -> {len(observations)} "
                f"in {len(pages)} pages, _include, {len(encounters)} Encounters")

    # ----- driver ----------------------------------------------------------

    def run(self):
        self.check("(a) CapabilityStatement", self.capability)
        if not hasattr(self, "capabilities"):
            self.capabilities = {}
        self.check("(a) Patient read and vread", self.patient_read)
        self.check("(a) Patient search by family", self.patient_search)
        self.check("(a) $everything", self.everything)
        self.check("(a) Patient history", self.history)
        self.check("(a) $export", self.export)
        self.check("(a) a search without matches", self.empty_search)
        self.check("(a) Observation search, paging, _total, _include", self.observations)
        self.check("(a) errors are OperationOutcomes", self.errors)
        if self.args.other_patient:
            self.check("(a) a search reaching a record without a relationship", self.withheld_search)
        for resource_type in self.types():
            self.check(f"(a) {resource_type} search and read", lambda t=resource_type: self.seeded_type(t))
        if self.args.auditor_token:
            self.check("(a) AuditEvents", self.audit_events)
        self.check("(b) fhirclient read and search", self.smart_client)
        # Last: it adds an Observation, which the counts above do not expect.
        if self.args.write:
            self.check("(a) transaction and transaction-response", self.transaction)
        print("\n".join(self.summary))
        counted = ", ".join(f"{t} {n}" for t, n in sorted(self.validated.items()))
        print(f"validated with fhir.resources (FHIR {self.models_version}): {counted}")
        if self.conditional_refs:
            print(f"note: {self.conditional_refs} conditional references were left as written")
        passed = sum(1 for line in self.summary if line.startswith("ok"))
        if self.failures:
            print(f"\n{len(self.failures)} check(s) failed:", file=sys.stderr)
            for failure in self.failures:
                print(f"- {failure}", file=sys.stderr)
            return 1
        print(f"all {passed} checks passed")
        return 0


def references(value):
    """Every `reference` string in a resource (iterative walk)."""
    found = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            ref = item.get("reference")
            if isinstance(ref, str):
                found.append(ref)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def json_rule_violations(value):
    """FHIR JSON (json.html): no null values, no empty objects, arrays or
    strings. The models accept some of these; the specification does not."""
    problems = []
    stack = [(value, "")]
    while stack:
        item, path = stack.pop()
        if item is None:
            problems.append(f"{path or '/'} is null")
        elif isinstance(item, dict):
            if not item:
                problems.append(f"{path or '/'} is an empty object")
            stack.extend((v, f"{path}/{k}") for k, v in item.items())
        elif isinstance(item, list):
            if not item:
                problems.append(f"{path} is an empty array")
            stack.extend((v, f"{path}/{i}") for i, v in enumerate(item))
        elif isinstance(item, str) and not item.strip():
            problems.append(f"{path} is an empty string")
    return problems


def main(argv):
    args = parse_args(argv)
    try:
        import requests
        import fhirclient  # noqa: F401  (the SMART client; used in smart_client)
        from fhir.resources import __fhir_version__ as models_version
        from fhir.resources import get_fhir_model_class
        from pydantic import ValidationError
    except ImportError as e:
        print(f"missing module: {e} (pip install -r testing/fhir/requirements.txt)", file=sys.stderr)
        return MISSING_MODULE
    if models_version != "4.0.1":
        print(f"fhir.resources gives FHIR {models_version} models, not R4 (4.0.1): "
              "install the version pinned in testing/fhir/requirements.txt", file=sys.stderr)
        return MISSING_MODULE
    return Checker(args, requests, models_version, get_fhir_model_class, ValidationError).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
