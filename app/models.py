"""Import every ORM module so ``Base.metadata`` is complete (Alembic and tests use this)."""

from app.accounts import models as accounts_models  # noqa: F401
from app.datasets import models as datasets_models  # noqa: F401
from app.db import Base
from app.jobs import models as jobs_models  # noqa: F401
from app.projects import models as projects_models  # noqa: F401
from app.versions import models as versions_models  # noqa: F401
from app.webhooks import models as webhooks_models  # noqa: F401

metadata = Base.metadata
