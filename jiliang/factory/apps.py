from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class FactoryConfig(AppConfig):
    name = "jiliang.factory"
    label = "factory"
    verbose_name = _("二检合一")
