"""The test project's URLs with the dashboard mounted at /relay/."""

from django.urls import include, path

from .urls import urlpatterns as base

urlpatterns = [*base, path("relay/", include("redrelay.dashboard.django"))]
