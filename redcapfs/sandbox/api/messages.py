"""REDCap's message texts, exactly as redcap-api.md gives them (clients tell errors apart by text)."""

from __future__ import annotations

BAD_TOKEN = "You do not have permissions to use the API"
NO_IMPORT = "You do not have API Import/Update privileges"
NO_ACCESS = (
    'The API request cannot complete because currently you have "No Access" data export rights. '
    "Higher level data export rights are required for this operation."
)
INVALID_EVENT = "invalid event"
NOT_FILE_FIELD = "The field '{field}' does not exist or is not a 'file' field"
NO_FILE_DOWNLOAD = "There is no file to download for this record"
NO_FILE_DELETE = "There is no file to delete for this record"
RECORD_MISSING = 'The record "{record}" does not exist'
RECORD_MISSING_LEGACY = "The record '{record}' does not exist"
RECORD_MISSING_UPLOAD = "The record '{record}' does not exist. It must exist to upload a file"
NO_VALID_FILE = "No valid file was uploaded"
CLEANUP = "The file cannot be uploaded because the project is in Analysis/Cleanup status."
CLEANUP_RECORDS = "The data cannot be imported because the project is in Analysis/Cleanup status."
LOCKED_UPLOAD = 'The uploaded file could not be saved because record "{record}" is locked.'
LOCKED_DELETE = 'The file could not be deleted because record "{record}" is locked.'
LOCKED_FORM_UPLOAD = ("The uploaded file could not be saved because the field's instrument is locked "
                      'for record "{record}".')
LOCKED_FORM_DELETE = 'The file could not be deleted because the field\'s instrument is locked for record "{record}".'
LOCKED_RECORD = 'The record "{record}" is locked and cannot be modified.'
TOO_LARGE = "The uploaded file exceeded the maximum file size limit of {mb} MB for File Upload fields."
SIGNATURE = (
    "The field '{field}' is a signature field, which cannot be imported using the API but can only be "
    "created using the web interface. However, it can be downloaded or deleted using the API."
)
BAD_CONTENT = 'The value of the parameter "content" is not valid'
BAD_ACTION = 'The value of the parameter "action" is not valid'
CLASSIC = {
    "arm": "You cannot export arms for classic projects",
    "event": "You cannot export events for classic projects",
    "formEventMapping": "You cannot export form/event mappings for classic projects",
}
NO_DATA = 'The parameter "data" is missing'
BAD_DATA = "The data being imported is not formatted correctly"
IMPORT_FORMATS = "The sandbox imports records in json or csv format only"
DELETE_MISSING = (
    "One or more of the records provided cannot be deleted because they do not "
    "exist in the project. The following records do not exist: "
)
NO_EXPORT = "You do not have API Export privileges"
NO_RIGHT = "You do not have permissions to use this API method: it needs the {right} privilege"
RIGHT_NAMES = {
    "user_rights": "User Rights", "design": "Project Design and Setup", "file_repository": "File Repository",
    "data_access_groups": "Data Access Groups", "logging": "Logging", "record_delete": "Delete Records",
    "record_create": "Create Records",
}
PRODUCTION = "You cannot modify {what} of a project in production status through the API"
BAD_ARM = "The arm number(s) {arm} are not valid"
BAD_EVENTS = "The following event names are not valid: {events}"
BAD_FORM = "The instrument '{form}' does not exist in the project"
METADATA_PRODUCTION = "Metadata cannot be imported while the project is in production status"
BAD_FIELD = "The field {field} does not exist in the project"
BAD_USERS = "The following users are not users of this project: {users}"
BAD_ROLES = "The following roles do not exist in this project: {roles}"
ROLE_HAS_USERS = "A role cannot be deleted while users are assigned to it"
BAD_DAGS = "The following Data Access Groups do not exist in this project: {dags}"
DAG_RECORD = "The record \"{record}\" does not exist or belongs to a Data Access Group you cannot access"
REPO_FOLDER = (
    "The File Repository folder folder_id={folder} does not exist or else you do not have permission to "
    "that folder because it is DAG-restricted or Role-restricted."
)
REPO_DOC = (
    "The File Repository file doc_id={doc} does not exist or else you do not have permission to "
    "that file because it is in a DAG-restricted or Role-restricted folder."
)
REPO_NO_NAME = 'The parameter "name" is missing'
BAD_LOGIC = "The filterLogic '{logic}' could not be read (near: {near})"
NO_CREATE = "You do not have permission to create new records"
NO_DELETE = "You do not have permission to delete records"
OTHER_DAG = (
    "The record '{record}' cannot be modified because it belongs to a Data Access Group you are not assigned to"
)
NO_FORM_EXPORT = "You do not have export rights for the instrument '{form}' of the field '{field}'"
NO_FORM_EDIT = "You do not have edit rights for the instrument '{form}' of the field '{field}'"
