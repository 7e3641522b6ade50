"""The console's login: Django's LoginView behind the failed-login limits, with logins and
lockouts in the audit trail."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.db import transaction
from django.urls import reverse_lazy

from governance.audit import audit_record
from governance.login_guard import (
    client_address,
    login_failure_record,
    login_success_record,
    login_wait,
)


class LoginView(auth_views.LoginView):
    template_name = "registration/login.html"

    def post(self, request, *args, **kwargs):
        username = request.POST.get("username", "")
        wait = login_wait(username=username, address=client_address(request))
        if wait:
            # Refused before the form is validated: validating would check the password.
            form = self.form_class(request, initial={"username": username[:150]})
            minutes = -(-wait // 60)
            context = self.get_context_data(form=form, locked_out_minutes=minutes)
            response = self.render_to_response(context, status=429)
            response["Retry-After"] = str(wait)
            return response
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form):
        username = self.request.POST.get("username", "")
        address = client_address(self.request)
        if login_failure_record(username=username, address=address):
            with transaction.atomic():
                audit_record(
                    by=None,
                    action="user.login_locked",
                    object_type="auth.user",
                    object_repr=username[:200],
                    after={"username": username[:150], "address": address},
                )
        return super().form_invalid(form)

    def form_valid(self, form):
        response = super().form_valid(form)
        user = form.get_user()
        address = client_address(self.request)
        login_success_record(username=user.get_username(), address=address)
        with transaction.atomic():
            audit_record(by=user, action="user.login", obj=user, after={"address": address})
        return response


class PasswordChangeView(auth_views.PasswordChangeView):
    """Any console user changes their own password (the demo prints one once); the old one
    is required, the password validators apply, the change is audited."""

    template_name = "registration/password_change_form.html"
    success_url = reverse_lazy("dashboard")

    def form_valid(self, form):
        with transaction.atomic():
            response = super().form_valid(form)
            audit_record(by=self.request.user, action="user.password_change", obj=form.user)
        messages.success(self.request, "Your password is changed.")
        return response
