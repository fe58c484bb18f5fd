"""The web console in a real headless Chromium (Debian's chromium + chromium-driver, driven by
Selenium), against the real `bulkload serve` that tests/console.rs started.

One browser session walks the whole journey: sign in, upload a JSON and a CSV file, see each
result appear without a page reload, open a problem, download the failed-records file, fix it,
upload it again and see it succeed; validate a file with a store-level problem; another lender's
load URL answers 404; forms without their CSRF token are refused; sign-out ends access; the
operator pages after a TOTP sign-in. axe-core runs on every page (no serious or critical
violation allowed) and every page is photographed for docs/console.md. A second session with
JavaScript turned off signs in and uploads with the plain form.

Inputs (environment): CONSOLE_URL, LENDER_EMAIL, LENDER_PASSWORD, OPERATOR_EMAIL,
OPERATOR_PASSWORD, OPERATOR_TOTP (base32), FILES (folder with the files to upload),
OTHER_LOAD (a load number only the other lender has), SHOTS (screenshot folder),
WORK (scratch folder). Exits non-zero, with the reason, on the first failed check.
"""

import base64
import hashlib
import hmac
import json
import os
import struct
import sys
import tempfile
import time

import importlib.util
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

URL = os.environ["CONSOLE_URL"].rstrip("/")
FILES = os.environ["FILES"]
SHOTS = os.environ["SHOTS"]
WORK = os.environ["WORK"]
ENV = "sandbox"
CHECKS = []


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    CHECKS.append(what)


def browser(js=True):
    o = webdriver.ChromeOptions()
    o.binary_location = "/usr/bin/chromium"
    for a in [
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", "--window-size=1100,800",
        "--user-data-dir=" + tempfile.mkdtemp(dir=WORK, prefix="chromium-"),
    ]:
        o.add_argument(a)
    prefs = {"download.default_directory": os.path.join(WORK, "downloads"),
             "download.prompt_for_download": False}
    if not js:
        prefs["profile.managed_default_content_settings.javascript"] = 2
    o.add_experimental_option("prefs", prefs)
    d = webdriver.Chrome(options=o, service=Service("/usr/bin/chromedriver"))
    d.set_page_load_timeout(30)
    if js:
        d.execute_cdp_cmd("Browser.setDownloadBehavior",
                          {"behavior": "allow", "downloadPath": os.path.join(WORK, "downloads")})
    return d


def wait(d, cond, what, timeout=60):
    try:
        return WebDriverWait(d, timeout, poll_frequency=0.2).until(lambda _: cond())
    except Exception as e:
        raise AssertionError(f"timed out waiting for {what}: {e}; page: {d.current_url}\n"
                             + d.find_element(By.TAG_NAME, "body").text[:2000])


# axe-core, as bundled by the axe-playwright-python package (installed without its Playwright
# dependency: only its axe.min.js is used, injected through Selenium).
_spec = importlib.util.find_spec("axe_playwright_python")
with open(os.path.join(os.path.dirname(_spec.origin), "axe.min.js"), encoding="utf-8") as _f:
    AXE_JS = _f.read()


def axe(d, page):
    d.execute_script(AXE_JS)
    r = d.execute_async_script(
        """const done = arguments[arguments.length - 1];
        axe.run(document, {resultTypes: ['violations']}).then(r => done(r)).catch(e => done({error: String(e)}));""")
    check("violations" in r, f"axe ran on {page}: {r.get('error')}")
    bad = [v for v in r["violations"] if v.get("impact") in ("serious", "critical")]
    check(not bad, f"axe on {page}: no serious/critical violations: "
          + json.dumps([(v["id"], v["impact"], v["help"], [n["target"] for n in v["nodes"]][:3])
                        for v in bad]))


def shot(d, name):
    os.makedirs(SHOTS, exist_ok=True)
    d.save_screenshot(os.path.join(SHOTS, name + ".png"))


def visit(d, name):
    """Accessibility check and screenshot of the page now shown."""
    axe(d, name)
    shot(d, name)


def status_of(d, path, method="GET", body=None):
    """The HTTP status the browser gets for a request of this page's origin (its cookies)."""
    return d.execute_async_script(
        """const [path, method, body, done] = arguments;
        const opts = {method, credentials: 'same-origin', redirect: 'manual'};
        if (body !== null) { opts.body = new URLSearchParams(body); }
        fetch(path, opts).then(r => done(r.status)).catch(e => done(String(e)));""",
        path, method, body)


def totp(secret_b32):
    key = base64.b32decode(secret_b32.upper() + "=" * (-len(secret_b32) % 8))
    counter = struct.pack(">Q", int(time.time()) // 30)
    h = hmac.new(key, counter, hashlib.sha1).digest()
    o = h[-1] & 15
    return "%06d" % ((struct.unpack(">I", h[o:o + 4])[0] & 0x7FFFFFFF) % 1000000)


def sign_in(d, email, password):
    d.get(URL + "/console/login")
    d.find_element(By.ID, "email").send_keys(email)
    d.find_element(By.ID, "password").send_keys(password)
    d.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()


def upload(d, path, page="upload"):
    """Uploads with the page's form (JS: progress and polling); returns the outcome's load link."""
    d.get(f"{URL}/console/{ENV}/{page}")
    d.execute_script("window.__noReload = 'still here';")
    d.find_element(By.ID, "file").send_keys(path)
    d.find_element(By.CSS_SELECTOR, "#upload button[type=submit]").click()
    link = wait(d, lambda: (d.find_elements(By.CSS_SELECTOR, "#outcome a") or [None])[0],
                f"the result of {os.path.basename(path)}")
    check(d.execute_script("return window.__noReload") == "still here",
          f"{os.path.basename(path)}: the result appeared without reloading the page")
    check(d.find_element(By.ID, "progress").get_attribute("value") == "100",
          "the progress bar reached 100%")
    return link.get_attribute("href"), d.find_element(By.ID, "outcome").text


def journey():
    os.makedirs(os.path.join(WORK, "downloads"), exist_ok=True)
    d = browser()
    try:
        # Signed out: everything leads to sign-in.
        d.get(URL + "/console/" + ENV + "/loads")
        check(d.current_url.endswith("/console/login"), "signed out, a page redirects to sign-in")
        visit(d, "signin")
        # Keyboard: the first Tab reaches the skip link.
        d.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
        check(d.switch_to.active_element.text == "Skip to content", "the first Tab stop is the skip link")

        # A wrong password is refused (and counted by the shared defender).
        sign_in(d, os.environ["LENDER_EMAIL"], "wrong password")
        # A refused sign-in is answered after a deliberate delay: wait for the answer's page.
        refused = wait(d, lambda: d.find_elements(By.CSS_SELECTOR, "p.error"), "the sign-in refusal")
        check("Wrong e-mail or password" in refused[0].text, "a wrong password is refused")
        sign_in(d, os.environ["LENDER_EMAIL"], os.environ["LENDER_PASSWORD"])
        wait(d, lambda: d.current_url.endswith(f"/console/{ENV}/loads"), "the loads page")
        c = d.get_cookie("bulkload_session")
        check(c and c["httpOnly"] and c.get("sameSite") == "Strict" and not c["secure"],
              f"the session cookie is HttpOnly, SameSite=Strict (not Secure over plain HTTP): {c}")

        # A JSON file and a CSV file, each with one bad record.
        json_url, text = upload(d, os.path.join(FILES, "employees.json"))
        check("with failures" in text and "Created1" in text.replace("\n", "").replace(" ", ""),
              "the JSON load's outcome: 1 created, 1 failed")
        visit(d, "upload")
        csv_url, text = upload(d, os.path.join(FILES, "borrowers.csv"))
        check("with failures" in text, "the CSV load's outcome shows its failure")

        # The loads list, filtered.
        d.get(f"{URL}/console/{ENV}/loads")
        check("employees.json" in d.page_source and "borrowers.csv" in d.page_source,
              "both loads are listed")
        visit(d, "loads")
        d.find_element(By.ID, "q").send_keys("borrowers" + Keys.ENTER)
        wait(d, lambda: "q=borrowers" in d.current_url, "the filtered list")
        rows = d.find_elements(By.CSS_SELECTOR, "tbody tr")
        check(len(rows) == 1 and "borrowers.csv" in rows[0].text, "the filter keeps the CSV load only")
        check("Web" in rows[0].text, "a console upload is listed with the source Web")

        # The CSV load: counts, problems, downloads; open its problem.
        d.get(csv_url)
        check("Problems" in d.page_source, "the load page lists problems")
        visit(d, "load")
        d.find_element(By.CSS_SELECTOR, "table.problems tbody a").click()
        wait(d, lambda: "/problems/" in d.current_url, "the problem page")
        check("Email" in d.find_element(By.CSS_SELECTOR, "p.problem").text, "the problem names the field")
        visit(d, "problem")

        # Download the failed-records file (a real download, into the download folder).
        d.find_element(By.LINK_TEXT, "failed records").click()
        downloads = os.path.join(WORK, "downloads")
        got = wait(d, lambda: [f for f in os.listdir(downloads) if ".failed." in f
                               and not f.endswith(".crdownload")], "the failed-records download")
        with open(os.path.join(downloads, got[0]), encoding="utf-8") as f:
            failed = f.read()
        check("not-an-email" in failed and "_problems" in failed,
              "the failed-records file holds the bad record and its problems")
        fixed = os.path.join(WORK, "borrowers_fixed.csv")
        with open(fixed, "w", encoding="utf-8") as f:
            f.write(failed.replace("not-an-email", "fixed@example.test"))
        _, text = upload(d, fixed)
        check("succeeded" in text, "the fixed file succeeds: " + text)

        # Filter a load's problems by field.
        d.get(csv_url + "?q=Email")
        check(len(d.find_elements(By.CSS_SELECTOR, "table.problems tbody tr")) == 1,
              "problems filtered by field")

        # Validate: a store-level problem (an e-mail another account holds), nothing applied.
        d.get(f"{URL}/console/{ENV}/validate")
        visit(d, "validate")
        val_url, text = upload(d, os.path.join(FILES, "employees_check.csv"), page="validate")
        check("validation only" in text, "the validation's outcome says nothing was applied")
        d.get(val_url)
        check("is already in use" in d.page_source, "validate shows the store-level problem")
        visit(d, "validation-result")

        # Templates, schemas, lookups; connection details.
        d.get(f"{URL}/console/{ENV}/downloads")
        visit(d, "downloads")
        check(status_of(d, f"/console/{ENV}/downloads/employees.csv") == 200, "a template downloads")
        d.get(f"{URL}/console/{ENV}/connect")
        check("SHA256:" in d.page_source, "the connection page shows the host key fingerprint")
        visit(d, "connect")

        # Another lender's load, and made-up URLs: 404.
        other = os.environ["OTHER_LOAD"]
        check(status_of(d, f"/console/{ENV}/loads/{other}") == 404, "another lender's load answers 404")
        check(status_of(d, f"/console/{ENV}/loads/{other}/files/result") == 404,
              "another lender's result answers 404")
        d.get(f"{URL}/console/{ENV}/loads/{other}")
        check(d.find_element(By.TAG_NAME, "h1").text == "Not found", "the 404 page is the console's")
        visit(d, "not-found")
        check(status_of(d, "/console/ops") == 404, "operator pages answer 404 to a lender")
        check(status_of(d, "/console/nosuchenv/loads") == 404, "an unknown environment answers 404")

        # Forms without their CSRF token are refused; the session survives.
        check(status_of(d, "/console/logout", "POST", {}) == 403, "sign-out without its token is refused")
        check(status_of(d, "/console/logout", "POST", {"csrf": "0" * 64}) == 403,
              "sign-out with a wrong token is refused")
        refused_upload = d.execute_async_script(
            """const done = arguments[0]; const f = new FormData();
            f.append('mode', 'apply');
            f.append('file', new Blob(['[]'], {type: 'application/json'}), 'employees_x.json');
            fetch('/console/sandbox/upload', {method: 'POST', body: f, credentials: 'same-origin'})
              .then(r => done(r.status));""")
        check(refused_upload == 403, "an upload without its token is refused")
        check(status_of(d, f"/console/{ENV}/loads") == 200, "still signed in after the refusals")

        # Readable on a phone: no sideways scrolling of the page.
        d.set_window_size(390, 844)
        d.get(csv_url)
        shot(d, "phone")
        wide = d.execute_script(
            """return Array.from(document.querySelectorAll('body *'))
                 .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1
                              && !e.closest('.scroll'))
                 .map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right))
                 .slice(0, 5);""")
        check(not wide and d.execute_script(
            "return document.documentElement.scrollWidth <= window.innerWidth + 1"),
              f"the load page fits a phone's width (too wide: {wide})")
        d.set_window_size(1100, 800)

        # Sign-out ends access.
        d.get(f"{URL}/console/{ENV}/loads")
        d.find_element(By.CSS_SELECTOR, "form.signout button").click()
        wait(d, lambda: d.current_url.endswith("/console/login"), "the sign-in page after sign-out")
        d.get(csv_url)
        check(d.current_url.endswith("/console/login"), "after sign-out, a load page leads to sign-in")

        # Operator: password, then TOTP.
        sign_in(d, os.environ["OPERATOR_EMAIL"], os.environ["OPERATOR_PASSWORD"])
        wait(d, lambda: d.current_url.endswith("/console/totp"), "the TOTP form")
        visit(d, "totp")
        d.find_element(By.ID, "code").send_keys("000000" if totp(os.environ["OPERATOR_TOTP"]) != "000000" else "111111")
        d.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
        wait(d, lambda: "not right" in d.page_source, "the wrong TOTP code refused")
        check(d.current_url.endswith("/console/totp"), "a wrong TOTP code is refused")
        d.find_element(By.ID, "code").send_keys(totp(os.environ["OPERATOR_TOTP"]))
        d.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
        wait(d, lambda: d.current_url.endswith("/console/ops"), "the operator overview")
        check("acme" in d.page_source and "beta" in d.page_source, "the overview lists every lender")
        check(d.find_elements(By.CSS_SELECTOR, "svg[role=img] rect"), "the records-per-hour chart is drawn")
        visit(d, "operator")
        d.get(URL + "/console/ops/logins")
        check(os.environ["LENDER_EMAIL"] in d.page_source, "the refused sign-in is listed")
        visit(d, "operator-logins")
        d.get(URL + "/console/ops/deliveries")
        visit(d, "operator-deliveries")
        check(status_of(d, f"/console/{ENV}/loads") == 404, "lender pages answer 404 to an operator")
    finally:
        d.quit()

    # Without JavaScript: sign in and a plain upload still work.
    d = browser(js=False)
    try:
        sign_in(d, os.environ["LENDER_EMAIL"], os.environ["LENDER_PASSWORD"])
        wait(d, lambda: d.current_url.endswith(f"/console/{ENV}/loads"), "the loads page (no JS)")
        d.get(f"{URL}/console/{ENV}/upload")
        d.find_element(By.ID, "file").send_keys(os.path.join(FILES, "employees_nojs.json"))
        d.find_element(By.CSS_SELECTOR, "#upload button[type=submit]").click()
        wait(d, lambda: "/uploads/" in d.current_url or "/loads/" in d.current_url, "the queued page (no JS)")

        def done():
            if "/loads/" in d.current_url:
                return True
            d.find_element(By.LINK_TEXT, "Check again").click()
            time.sleep(0.5)
            return "/loads/" in d.current_url
        wait(d, done, "the load page after a plain upload (no JS)")
        check("succeeded" in d.page_source, "the plain upload was applied")
    finally:
        d.quit()


if __name__ == "__main__":
    try:
        journey()
    except AssertionError as e:
        print(f"FAILED after {len(CHECKS)} checks: {e}", file=sys.stderr)
        sys.exit(1)
    for c in CHECKS:
        print("ok:", c)
    print(f"{len(CHECKS)} checks passed")
