from django.apps import AppConfig
from django.db.models.signals import post_migrate
from django.utils.translation import gettext_lazy as _


class RegistryConfig(AppConfig):
    name = "jiliang.registry"
    label = "registry"
    verbose_name = _("器具登记备案")

    def ready(self) -> None:
        from jiliang.registry import catalogue

        post_migrate.connect(catalogue.sync_after_migrate, sender=self)
