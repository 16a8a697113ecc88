"""Text pools the builders draw names, messages, comments and files from."""

from __future__ import annotations

# --------------------------------------------------------------------------- text pools

_USERS = [
    ("Alex Kim", "alexkim"),
    ("Zoë Müller", "zoe.mueller"),
    ("José Álvarez", "jalvarez"),
    ("李雷", "lilei"),
    ("Priya Natarajan", "priya"),
    ("Øyvind Hansen", "oyvind"),
    ("Fatima Zahra El Idrissi", "fatima"),
    ("Chen Wei 🚀", "chenwei"),
    ("Grace O'Neil", "goneil"),
    ("Mateus Ferreira", "mferreira"),
    ("Aiko Tanaka", "aiko"),
    ("Emeka Obi", "emeka"),
    ("Sven Ödegård", "sven"),
    ("Olga Ivanova", "olga"),
    ("Noor Haddad", "noor"),
    ("Tomás Novák", "tnovak"),
]

_WORKSPACES = [("acme", "Acme Corporation"), ("globex", "Globex Ünited 🌍")]

# (slug, kind, project key) — kind: big | normal | nopipelines | empty | fork
# (Dataset(quiet_repos=N) adds kind quiet: quiet-0001 … alternating workspaces)
_SPECIAL_REPOS = [
    [
        ("api", "big", "API"),
        ("web-app", "normal", "WEB"),
        ("infra", "nopipelines", "OPS"),
        ("sandbox", "empty", "OPS"),
    ],
    [
        ("storefront", "normal", "STORE"),
        ("analytics", "normal", "DATA"),
        ("api-fork", "fork", "STORE"),
        ("mobile-app", "normal", "STORE"),
    ],
]
_EXTRA_REPOS = [
    "billing",
    "search",
    "auth-service",
    "gateway",
    "etl",
    "notifications",
    "reports",
    "ledger",
    "catalog",
    "checkout",
    "scheduler",
    "crawler",
    "docs-site",
    "sdk-python",
    "sdk-go",
    "terraform-modules",
    "design-system",
    "ml-models",
    "data-lake",
    "cli",
]
_PROJECTS = [
    [
        ("API", "Platform API", "Public and internal APIs."),
        ("WEB", "Web & Mobile", "Front-ends 🚀"),
        ("OPS", "Opérations", ""),
    ],
    [
        ("STORE", "Storefront", "Everything the shopper sees — ça marche."),
        ("DATA", "Data & Analytics 📊", "数据平台"),
    ],
]
_GROUPS = [
    ("developers", "Developers"),
    ("administrators", "Administrators"),
    ("qa-team", "QA Team ✅"),
]

_LANGS = ["python", "go", "typescript", "java", "rust", "kotlin", "c"]
_VERBS = [
    "Add",
    "Fix",
    "Refactor",
    "Update",
    "Remove",
    "Improve",
    "Document",
    "Optimise",
    "Rename",
    "Simplify",
    "Harden",
    "Bump",
]
_THINGS = [
    "login flow",
    "search index",
    "café menu parser",
    "ümlaut handling",
    "rate limiter",
    "CSV export",
    "中文 locale",
    "retry logic",
    "cache layer",
    "payment webhook",
    "OAuth refresh",
    "dark mode 🌙",
    "pagination",
    "audit log",
    "build script",
    "naïve date parsing",
    "Gerät registry",
    "feature flags",
]
_SUFFIXES = ["", "", "", "", " 🚀", " [skip ci]", " ✅", " — follow-up", " (again)"]
_BODIES = [
    "The previous implementation dropped the last page.",
    "Résumé: handles the edge case when the list is empty.",
    "这个修改修复了分页问题。",
    "Co-authored-by: Zoë Müller <zoe.mueller@example.com>",
    "See the discussion in the design doc 📄.",
    "Tested on staging; numbers look good (p95 \u221212 %).",
]
_COMMENTS = [
    "LGTM 👍",
    "Could we add a test for this?",
    "Nit: typo in «naïve».",
    "这个改动看起来不错。",
    "Why not use `functools.cache` here?",
    "Done ✅",
    "I'd rather keep the old behaviour for now.",
    "Merci ! C'est corrigé.",
    "Please rebase on the main branch.",
    "Does this handle ümlauts?",
    "Nice catch 🎉",
    "This breaks the CSV export when the field contains a comma.",
    "Can we split this into two PRs?",
    "Addressed in the latest push.",
    "```python\nreturn None\n```\nwould be simpler.",
]
_TASKS = [
    "Add changelog entry",
    "Update the docs",
    "Write a migration 🛠",
    "Rename the variable",
    "Check the Überprüfung step",
    "Remove debug logging",
]
_DECLINE_REASONS = [
    "Superseded by a different approach.",
    "Ne plus nécessaire.",
    "Won't fix 🙅",
    "Duplicate of another PR.",
]
_TOPICS = [
    "login",
    "search",
    "export",
    "billing",
    "i18n",
    "cache",
    "metrics",
    "oauth",
    "retry",
    "docs",
    "ui-refresh",
    "perf",
    "audit",
    "webhooks",
    "rate-limit",
    "pagination",
]
_FILES = {
    "python": [
        "src/app/__init__.py",
        "src/app/main.py",
        "src/app/models.py",
        "src/app/api/views.py",
        "tests/test_views.py",
        "pyproject.toml",
        "README.md",
        "docs/café.md",
    ],
    "go": [
        "cmd/server/main.go",
        "internal/store/store.go",
        "internal/http/handler.go",
        "go.mod",
        "internal/http/handler_test.go",
        "README.md",
        "docs/über.md",
    ],
    "typescript": [
        "src/index.ts",
        "src/components/App.tsx",
        "src/api/client.ts",
        "package.json",
        "src/i18n/中文.json",
        "README.md",
        "test/app.test.ts",
    ],
    "java": [
        "src/main/java/com/acme/App.java",
        "src/main/java/com/acme/Service.java",
        "pom.xml",
        "src/test/java/com/acme/AppTest.java",
        "README.md",
    ],
    "rust": ["src/main.rs", "src/lib.rs", "Cargo.toml", "tests/integration.rs", "README.md"],
    "kotlin": [
        "app/src/main/kotlin/Main.kt",
        "app/build.gradle.kts",
        "README.md",
        "app/src/test/MainTest.kt",
    ],
    "c": ["src/main.c", "src/util.c", "include/util.h", "Makefile", "README.md"],
}
_STATUS_KEYS = [
    ("build", "Build"),
    ("lint", "Lint"),
    ("jenkins-ci", "Jenkins"),
    ("sonar", "SonarCloud"),
]
_STEP_NAMES = ["Build", "Test", "Lint", "Deploy to staging"]
_IMAGES = ["python:3.12", "node:22", "golang:1.24", "atlassian/default-image:4", "gcc:14"]
_HOOK_EVENTS = [
    "repo:push",
    "pullrequest:created",
    "pullrequest:updated",
    "pullrequest:fulfilled",
    "pullrequest:rejected",
    "pullrequest:comment_created",
    "repo:commit_status_updated",
]
