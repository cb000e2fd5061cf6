from datetime import date, timedelta

import pytest

from services.overview.domain.codes import CodeSystem, ServiceType
from services.overview.domain.services import MunicipalService, ServiceStatus, status_on

TODAY = date(2025, 3, 10)
DAY = timedelta(days=1)
HOME_NURSING = ServiceType(CodeSystem.NATIONAL_9151, "15", "Helsetjenester i hjemmet", None)


def service(start: date, end: date | None = None, *, cessation: bool = False) -> MunicipalService:
    return MunicipalService(
        service_type=HOME_NURSING,
        start_date=start,
        end_date=end,
        temporary_cessation=cessation,
        stay_type=None,
        weekly_extent=None,
        weekly_hours=None,
        description=None,
        needs_caption=False,
        service_level=None,
        responsible_unit=None,
        primary_contact=None,
        next_planned_visit=None,
        coordinator=None,
        key_box=None,
    )


@pytest.mark.parametrize(
    ("start", "end", "cessation", "expected"),
    [
        # start date
        (TODAY, None, False, ServiceStatus.ACTIVE),
        (TODAY - DAY, None, False, ServiceStatus.ACTIVE),
        (TODAY + DAY, None, False, ServiceStatus.PLANNED),
        (TODAY - 3650 * DAY, None, False, ServiceStatus.ACTIVE),
        # end date: the last day of delivery, inclusive
        (TODAY - 10 * DAY, TODAY, False, ServiceStatus.ACTIVE),
        (TODAY - 10 * DAY, TODAY + DAY, False, ServiceStatus.ACTIVE),
        (TODAY - 10 * DAY, TODAY - DAY, False, ServiceStatus.ENDED),
        (TODAY, TODAY, False, ServiceStatus.ACTIVE),
        # temporary cessation
        (TODAY - 10 * DAY, None, True, ServiceStatus.ON_HOLD),
        (TODAY, None, True, ServiceStatus.ON_HOLD),
        (TODAY - 10 * DAY, TODAY, True, ServiceStatus.ON_HOLD),
        # planned wins over cessation; ended wins over cessation
        (TODAY + DAY, None, True, ServiceStatus.PLANNED),
        (TODAY + DAY, TODAY + 5 * DAY, True, ServiceStatus.PLANNED),
        (TODAY - 10 * DAY, TODAY - DAY, True, ServiceStatus.ENDED),
    ],
)
def test_status_on(start: date, end: date | None, cessation: bool, expected: ServiceStatus) -> None:
    assert status_on(service(start, end, cessation=cessation), TODAY) is expected


def test_statuses_are_numbered_like_the_contract_and_in_display_order() -> None:
    assert [(status.name, int(status)) for status in ServiceStatus] == [
        ("ACTIVE", 1),
        ("ON_HOLD", 2),
        ("PLANNED", 3),
        ("ENDED", 4),
    ]
