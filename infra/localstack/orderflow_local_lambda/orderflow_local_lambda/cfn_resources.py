"""CloudFormation resources that LocalStack 4.13.1 (community) deploys differently from AWS,
made to do what AWS documents. Nothing here does what AWS does not.

- `AWS::CloudWatch::Dashboard`: LocalStack has no resource provider for it and skips the
  resource with a warning, so the stack deploys without its dashboard. This provider creates,
  updates and deletes it with CloudWatch's own PutDashboard / DeleteDashboards (which
  LocalStack implements), as AWS's handler does: `Ref` is the dashboard's name, a name not given
  is generated, and the name is create-only ("AWS::CloudWatch::Dashboard",
  https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-resource-cloudwatch-dashboard.html).
- `AWS::Events::EventBusPolicy` with `Statement`: LocalStack calls PutPermission with a policy
  of that one statement, which replaces the bus's whole policy, so of several such resources on
  one bus only the last one's statement is left. On AWS each resource is one statement of the
  bus's policy, named by its `StatementId` and removed by it ("AWS::Events::EventBusPolicy",
  StatementId: "An identifier string for the external account that you are granting
  permissions to",
  https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-resource-events-eventbuspolicy.html;
  "Permissions for event buses in Amazon EventBridge": a bus's policy holds a statement per
  grant, https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-event-bus-perms.html).
  The patched `create` merges the statement into the policy the bus already has, replacing
  only a statement with the same Sid.

Installed by iam_enforcer's on_infra_start hook (`install()`) and by the
`localstack.cloudformation.resource_providers` entry point (pyproject.toml).
"""

from __future__ import annotations

import json
import logging

LOG = logging.getLogger(__name__)

DASHBOARD_TYPE = "AWS::CloudWatch::Dashboard"

# What LocalStack's engine reads from a provider's schema: the primary identifier (the physical
# id) and the create-only properties (a change replaces the resource), as in AWS's schema.
DASHBOARD_SCHEMA = {
    "typeName": DASHBOARD_TYPE,
    "properties": {
        "DashboardName": {"type": "string"},
        "DashboardBody": {"type": "string"},
    },
    "required": ["DashboardBody"],
    "createOnlyProperties": ["/properties/DashboardName"],
    "primaryIdentifier": ["/properties/DashboardName"],
    "additionalProperties": False,
}


def merged_bus_policy(existing: str | None, statement_id: str, statement: dict) -> dict:
    """The bus's policy with `statement` as its statement `statement_id` (added, or replacing
    the one with that Sid), every other statement kept."""
    policy = json.loads(existing) if existing else {}
    others = [s for s in policy.get("Statement", []) if s.get("Sid") != statement_id]
    return {"Version": policy.get("Version", "2012-10-17"),
            "Statement": [*others, {**statement, "Sid": statement_id}]}


def _dashboard_provider():
    from localstack.services.cloudformation import provider_utils as util
    from localstack.services.cloudformation.resource_provider import (
        OperationStatus,
        ProgressEvent,
        ResourceProvider,
    )

    class CloudWatchDashboardProvider(ResourceProvider[dict]):
        TYPE = DASHBOARD_TYPE
        SCHEMA = DASHBOARD_SCHEMA

        def create(self, request):
            model = request.desired_state
            if not model.get("DashboardName"):
                model["DashboardName"] = util.generate_default_name(request.stack_name,
                                                                    request.logical_resource_id)
            request.aws_client_factory.cloudwatch.put_dashboard(
                DashboardName=model["DashboardName"], DashboardBody=model["DashboardBody"])
            return ProgressEvent(status=OperationStatus.SUCCESS, resource_model=model)

        def read(self, request):
            raise NotImplementedError

        def update(self, request):
            model = request.desired_state
            model["DashboardName"] = (request.previous_state or {}).get("DashboardName") or model.get("DashboardName")
            request.aws_client_factory.cloudwatch.put_dashboard(
                DashboardName=model["DashboardName"], DashboardBody=model["DashboardBody"])
            return ProgressEvent(status=OperationStatus.SUCCESS, resource_model=model)

        def delete(self, request):
            name = request.desired_state.get("DashboardName")
            if name:
                request.aws_client_factory.cloudwatch.delete_dashboards(DashboardNames=[name])
            return ProgressEvent(status=OperationStatus.SUCCESS, resource_model=request.desired_state)

    return CloudWatchDashboardProvider


try:  # LocalStack's plugin base class, when loaded inside LocalStack
    from localstack.services.cloudformation.resource_provider import CloudFormationResourceProviderPlugin

    class CloudWatchDashboardProviderPlugin(CloudFormationResourceProviderPlugin):
        name = DASHBOARD_TYPE

        def __init__(self):
            self.factory = None

        def load(self):
            self.factory = _dashboard_provider()
except ImportError:  # the unit tests of merged_bus_policy run without LocalStack
    pass


def install() -> None:
    """Patches the EventBusPolicy provider's create (see the module doc). Idempotent."""
    from localstack.services.cloudformation.resource_provider import OperationStatus, ProgressEvent
    from localstack.services.events.resource_providers import aws_events_eventbuspolicy as module

    provider = module.EventsEventBusPolicyProvider
    if getattr(provider.create, "orderflow_merges_statements", False):
        return
    original_create = provider.create

    def create(self, request):
        model = request.desired_state
        statement = model.get("Statement")
        if not statement:
            return original_create(self, request)
        events = request.aws_client_factory.events
        bus = model.get("EventBusName") or "default"
        model["Id"] = f"EventBusPolicy-{model['StatementId']}"
        existing = events.describe_event_bus(Name=bus).get("Policy")
        policy = merged_bus_policy(existing, model["StatementId"], statement)
        events.put_permission(EventBusName=bus, Policy=json.dumps(policy))
        return ProgressEvent(status=OperationStatus.SUCCESS, resource_model=model,
                             custom_context=request.custom_context)

    create.orderflow_merges_statements = True
    provider.create = create
    LOG.info("orderflow: AWS::Events::EventBusPolicy statements are merged into the bus policy, as on AWS")
