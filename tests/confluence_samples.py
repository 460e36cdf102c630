"""Realistic storage-format pages and a seeded fake space, shared by the Confluence tests."""

from __future__ import annotations

from dataclasses import dataclass

from tests.fakes.confluence_server import FakeConfluence

DEPLOY_CODE = (
    "#!/usr/bin/env bash\n"
    "set -euo pipefail\n"
    "\n"
    'if [[ "$ENV" == prod ]]; then\n'
    "\tkubectl rollout restart deploy/api   # two spaces, a tab before\n"
    "    echo 'done <ok> & \"quoted\"'\n"
    "fi\n"
)

DEPLOY_PAGE = f"""<h1>Deploying the API</h1>
<p>Deploys of the <strong>billing API</strong> go through the <em>blue/green</em> pipeline.
Ask <ac:link><ri:user ri:userkey="u-ada" /></ac:link> before a deploy on Fridays&nbsp;&mdash; see
<ac:link><ri:page ri:content-title="Release checklist" /><ac:plain-text-link-body><![CDATA[the checklist]]></ac:plain-text-link-body></ac:link>
and the <a href="https://status.example.com/billing">status page</a>.</p>
<ac:structured-macro ac:name="info" ac:schema-version="1" ac:macro-id="6f0a"><ac:parameter ac:name="title">Freeze window</ac:parameter><ac:rich-text-body><p>No deploys between 22:00 and 06:00 UTC.</p></ac:rich-text-body></ac:structured-macro>
<h2>Rollout script</h2>
<ac:structured-macro ac:name="code" ac:schema-version="1"><ac:parameter ac:name="language">bash</ac:parameter><ac:parameter ac:name="linenumbers">true</ac:parameter><ac:plain-text-body><![CDATA[{DEPLOY_CODE}]]></ac:plain-text-body></ac:structured-macro>
<h2>Environments</h2>
<table><colgroup><col /><col /></colgroup><tbody>
<tr><th><p>Environment</p></th><th><p>Host</p></th><th>Owner</th></tr>
<tr><td><p>production</p></td><td><p>api.example.com</p></td><td><ac:link><ri:user ri:account-id="557058:f00d" /></ac:link></td></tr>
<tr><td>staging</td><td>staging.example.com | eu-west-1</td><td>platform team</td></tr>
</tbody></table>
"""

ONCALL_PAGE = """<p>The on-call engineer answers pages for the billing API within 15 minutes.</p>
<h2>Escalation</h2>
<ol><li><p>Page the primary on-call.</p></li><li><p>After 15 minutes page the secondary:</p>
<ul><li>weekdays: <ac:link><ri:user ri:userkey="u-grace" /></ac:link></li><li>weekends: the duty manager</li></ul></li></ol>
<ac:structured-macro ac:name="warning"><ac:rich-text-body><p>Never silence the <code>PaymentsDown</code> alert.</p></ac:rich-text-body></ac:structured-macro>
"""

FAILOVER_PAGE = """<h1>Database failover runbook</h1>
<p>When the primary Postgres in <strong>eu-west-1</strong> is lost, promote the replica.</p>
<ac:structured-macro ac:name="note"><ac:rich-text-body><p>Replication lag must be under 5 seconds before promotion.</p></ac:rich-text-body></ac:structured-macro>
<ac:structured-macro ac:name="code"><ac:parameter ac:name="language">sql</ac:parameter><ac:plain-text-body><![CDATA[SELECT pg_promote(wait => true);
SELECT now() - pg_last_xact_replay_timestamp() AS lag;]]></ac:plain-text-body></ac:structured-macro>
<ac:structured-macro ac:name="toc" />
"""

CHECKLIST_PAGE = """<p>Before tagging a release:</p>
<ac:task-list>
<ac:task><ac:task-id>1</ac:task-id><ac:task-status>complete</ac:task-status><ac:task-body>Changelog updated</ac:task-body></ac:task>
<ac:task><ac:task-id>2</ac:task-id><ac:task-status>incomplete</ac:task-status><ac:task-body>Smoke tests green on staging</ac:task-body></ac:task>
</ac:task-list>
"""

SALARY_PAGE = "<p>Salary bands for 2026: engineers L3 earn between 90k and 120k.</p>"

TOPICS = [
    "kafka consumer lag",
    "terraform state locking",
    "grafana dashboards",
    "feature flags cleanup",
    "s3 bucket lifecycle",
    "vpn certificates",
    "dependency upgrades",
    "load balancer timeouts",
    "cost review of the cluster",
    "incident postmortem template",
]


@dataclass
class SeededSpace:
    """Page ids of the seeded ENG space, by role."""

    home: str
    deploy: str
    oncall: str
    failover: str
    checklist: str
    salary: str
    salary_child: str
    notes: list[str]

    @property
    def visible(self) -> list[str]:
        """Every page the bot may index by default (restricted ones excluded)."""
        return [self.home, self.deploy, self.oncall, self.failover, self.checklist, *self.notes]


def seed_engineering_space(fake: FakeConfluence, *, notes: int = 30) -> SeededSpace:
    """An ENG space with realistic pages, a restricted subtree, and enough notes to need paging."""
    fake.add_space("ENG", "Engineering")
    fake.users.update({"u-ada": "Ada Lovelace", "u-grace": "Grace Hopper", "557058:f00d": "Linus Ops"})
    home = fake.add_page("ENG", "Engineering home", "<p>Welcome to the engineering space.</p>")
    runbooks = home
    deploy = fake.add_page("ENG", "Deploying the API", DEPLOY_PAGE, parent=runbooks, labels=["deploy", "api"])
    oncall = fake.add_page("ENG", "On-call rotation", ONCALL_PAGE, parent=runbooks, author="u-grace")
    failover = fake.add_page("ENG", "Database failover runbook", FAILOVER_PAGE, parent=runbooks)
    checklist = fake.add_page("ENG", "Release checklist", CHECKLIST_PAGE, parent=deploy)
    salary = fake.add_page("ENG", "Salary bands", SALARY_PAGE, restricted_to=["u-hr"])
    salary_child = fake.add_page(
        "ENG", "Salary bands details", "<p>Bonus rules for the salary bands.</p>", parent=salary
    )
    note_ids = [
        fake.add_page(
            "ENG",
            f"Meeting notes {i:02d}",
            f"<h2>Agenda</h2><p>We discussed {TOPICS[i % len(TOPICS)]} (meeting {i}).</p>",
            parent=home,
            labels=["meeting-notes"],
        )
        for i in range(notes)
    ]
    return SeededSpace(home, deploy, oncall, failover, checklist, salary, salary_child, note_ids)
